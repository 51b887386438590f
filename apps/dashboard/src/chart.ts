// Line charts as hand-written SVG: nice axis ticks, a series thinned to at
// most two points per pixel column (min and max, so spikes survive), and a
// hover readout of every series at the nearest step.
import { s } from './dom.js';
import { num } from './format.js';
import type { Point } from './run.js';

export interface Series {
  name: string;
  points: readonly Point[];
  /** CSS class: colour and stroke. */
  className: string;
  /** Draw a dot per point (sparse series such as eval loss). */
  markers?: boolean;
  /** In the legend and hover readout. */
  legend?: boolean;
}

export interface ChartOptions {
  series: Series[];
  /** The x axis runs to at least this (the run's planned steps). */
  xMax?: number;
  yFormat?: (y: number) => string;
  /** The y axis starts at 0 (rates, learning rates), not at the smallest value. */
  yFromZero?: boolean;
  /** Marks the svg for tests: data-testid and data-points (points of the first series). */
  testId?: string;
  height?: number;
}

const PAD = { left: 46, right: 12, top: 10, bottom: 22 };

export function renderChart(host: HTMLElement, options: ChartOptions): void {
  const width = Math.max(200, host.clientWidth);
  const height = options.height ?? 190;
  const yFormat = options.yFormat ?? num;
  const all = options.series.flatMap((x) => x.points);
  const first = options.series[0]?.points ?? [];
  const svg = s('svg', {
    class: 'chart',
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: 'img',
    'data-testid': options.testId,
    'data-points': first.length,
  });
  if (all.length === 0) {
    svg.append(
      s(
        'text',
        { x: width / 2, y: height / 2, class: 'chart-empty', 'text-anchor': 'middle' },
        'waiting for the first step…',
      ),
    );
    host.replaceChildren(svg);
    return;
  }
  const frame = frameFor(all, width, height, options);
  svg.append(grid(frame, yFormat));
  for (const series of options.series) svg.append(...lines(series, frame));
  hoverReadout(svg, options.series, frame, yFormat);
  host.replaceChildren(svg);
}

/** The plot's extent in data and in pixels, its ticks, and the maps between them. */
interface Frame {
  width: number;
  height: number;
  xMin: number;
  xMax: number;
  plotW: number;
  plotH: number;
  xTicks: number[];
  yTicks: number[];
  px: (x: number) => number;
  py: (y: number) => number;
}

function frameFor(all: readonly Point[], width: number, height: number, o: ChartOptions): Frame {
  let [xMin, xMax, yMin, yMax] = [Infinity, -Infinity, Infinity, -Infinity];
  for (const [x, y] of all) {
    if (!Number.isFinite(y)) continue;
    xMin = Math.min(xMin, x);
    xMax = Math.max(xMax, x);
    yMin = Math.min(yMin, y);
    yMax = Math.max(yMax, y);
  }
  xMin = Math.min(xMin, 0);
  if (o.yFromZero) yMin = Math.min(yMin, 0);
  xMax = Math.max(xMax, o.xMax ?? 0, xMin + 1);
  // Flat, or apart by a rounding error only (two accuracies of 1/16 summed in other orders):
  // ticks that fine would not move a float past its value.
  if (yMax - yMin <= 1e-9 * Math.max(Math.abs(yMin), Math.abs(yMax)))
    [yMin, yMax] = [yMin - Math.abs(yMin) * 0.1 - 1e-9, yMax + Math.abs(yMax) * 0.1 + 1e-9];
  const yTicks = niceTicks(yMin, yMax, Math.max(3, Math.floor(height / 45)));
  yMin = Math.min(yMin, yTicks[0]!);
  yMax = Math.max(yMax, yTicks.at(-1)!);
  const xTicks = niceTicks(xMin, xMax, Math.max(3, Math.floor(width / 90))).filter(
    (t) => t >= xMin && t <= xMax,
  );
  const plotW = width - PAD.left - PAD.right;
  const plotH = height - PAD.top - PAD.bottom;
  return {
    width,
    height,
    xMin,
    xMax,
    plotW,
    plotH,
    xTicks,
    yTicks,
    px: (x) => PAD.left + ((x - xMin) / (xMax - xMin)) * plotW,
    py: (y) => PAD.top + (1 - (y - yMin) / (yMax - yMin)) * plotH,
  };
}

/** Horizontal lines at the y ticks, labels on both axes, and the x axis. */
function grid(f: Frame, yFormat: (y: number) => string): SVGElement {
  const g = s('g', { class: 'grid' });
  for (const t of f.yTicks) {
    const y = f.py(t);
    g.append(
      s('line', { x1: PAD.left, x2: f.width - PAD.right, y1: y, y2: y }),
      s('text', { x: PAD.left - 6, y: y + 3.5, 'text-anchor': 'end' }, yFormat(t)),
    );
  }
  for (const t of f.xTicks) {
    g.append(s('text', { x: f.px(t), y: f.height - 6, 'text-anchor': 'middle' }, num(t)));
  }
  const bottom = PAD.top + f.plotH;
  g.append(
    s('line', { class: 'axis', x1: PAD.left, x2: f.width - PAD.right, y1: bottom, y2: bottom }),
  );
  return g;
}

/** A series' line (thinned), and its dots when it has markers. */
function lines(series: Series, f: Frame): SVGElement[] {
  if (series.points.length === 0) return [];
  const thin = thinned(series.points, f.px);
  const d = thin
    .map(([x, y], i) => `${i === 0 ? 'M' : 'L'}${f.px(x).toFixed(1)},${f.py(y).toFixed(1)}`)
    .join('');
  const out = [s('path', { class: `line ${series.className}`, d })];
  if (series.markers) {
    const dots = s('g', { class: `markers ${series.className}` });
    for (const [x, y] of thin) dots.append(s('circle', { cx: f.px(x), cy: f.py(y), r: 2.6 }));
    out.push(dots);
  }
  return out;
}

/** On hover: a vertical line at the nearest step and every legend series' value there. */
function hoverReadout(
  svg: SVGElement,
  all: readonly Series[],
  f: Frame,
  yFormat: (y: number) => string,
): void {
  const hover = s('g', { class: 'hover', visibility: 'hidden' });
  svg.append(hover);
  svg.addEventListener('mouseleave', () => hover.setAttribute('visibility', 'hidden'));
  svg.addEventListener('mousemove', (e) => {
    const box = svg.getBoundingClientRect();
    const x = f.xMin + ((e.clientX - box.left - PAD.left) / f.plotW) * (f.xMax - f.xMin);
    const near = all
      .filter((series) => series.legend !== false && series.points.length > 0)
      .map((series) => ({ series, point: nearest(series.points, x) }));
    if (near.length === 0) return;
    const at = near[0]!.point[0];
    hover.replaceChildren(
      s('line', { x1: f.px(at), x2: f.px(at), y1: PAD.top, y2: PAD.top + f.plotH }),
    );
    const text = [
      `step ${at}`,
      ...near.map(
        ({ series, point }) =>
          `${series.name} ${yFormat(point[1])}${point[0] !== at ? ` @${point[0]}` : ''}`,
      ),
    ];
    for (const { series, point } of near) {
      hover.append(
        s('circle', { class: series.className, cx: f.px(point[0]), cy: f.py(point[1]), r: 3.5 }),
      );
    }
    hover.append(tooltip(text, f.px(at), f.width));
    hover.setAttribute('visibility', 'visible');
  });
}

/** A box of `text` lines beside x, flipped to its left near the right edge. */
function tooltip(text: string[], x: number, width: number): SVGElement {
  const boxW = Math.max(...text.map((l) => l.length)) * 6.4 + 12;
  const left = x + boxW + 12 > width ? x - boxW - 8 : x + 8;
  const tip = s('g', { class: 'tip', transform: `translate(${left},${PAD.top + 4})` });
  tip.append(s('rect', { width: boxW, height: text.length * 14 + 8, rx: 4 }));
  text.forEach((line, i) => tip.append(s('text', { x: 6, y: 15 + i * 14 }, line)));
  return tip;
}

/** The point of `points` (sorted by x) nearest to `x`. */
function nearest(points: readonly Point[], x: number): Point {
  let [lo, hi] = [0, points.length - 1];
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (points[mid]![0] < x) lo = mid + 1;
    else hi = mid;
  }
  const after = points[lo]!;
  const before = points[Math.max(0, lo - 1)]!;
  return Math.abs(before[0] - x) <= Math.abs(after[0] - x) ? before : after;
}

/** At most the first, min, max and last point per pixel column, in x order. */
function thinned(points: readonly Point[], px: (x: number) => number): Point[] {
  if (points.length < 600) return points.filter(([, y]) => Number.isFinite(y));
  const out: Point[] = [];
  let column = NaN;
  let bucket: Point[] = [];
  const flush = () => {
    if (bucket.length === 0) return;
    let lo = bucket[0]!;
    let hi = bucket[0]!;
    for (const p of bucket) {
      if (p[1] < lo[1]) lo = p;
      if (p[1] > hi[1]) hi = p;
    }
    const keep = new Set([bucket[0]!, lo, hi, bucket.at(-1)!]);
    out.push(...bucket.filter((p) => keep.has(p)));
    bucket = [];
  };
  for (const p of points) {
    if (!Number.isFinite(p[1])) continue;
    const c = Math.floor(px(p[0]));
    if (c !== column) {
      flush();
      column = c;
    }
    bucket.push(p);
  }
  flush();
  return out;
}

/** Round tick values (1, 2, 5 x 10^k) covering [lo, hi] with about `count` ticks. */
export function niceTicks(lo: number, hi: number, count: number): number[] {
  const span = hi - lo;
  const raw = span / Math.max(1, count);
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) ?? 10 * magnitude;
  const start = Math.floor(lo / step) * step;
  // A step below the values' float resolution would never reach hi: the range itself.
  if (!(step > 0) || start + step === start || hi + step === hi) return [lo, hi];
  const ticks: number[] = [];
  for (let t = start; t <= hi + step * 0.5; t += step) ticks.push(Number(t.toPrecision(12)));
  return ticks;
}
