// The header (run, status, progress) and the row of headline figures.
import { h, mount } from '../dom.js';
import { count, duration, num } from '../format.js';
import type { Panel } from '../panel.js';
import type { RunView } from '../run.js';

export const headerPanel: Panel = {
  id: 'header',
  title: 'Run status',
  touches: ['run', 'step', 'end', 'clock', 'connection'],
  place: { kind: 'top' },
  render: renderHeader,
};

export const tilesPanel: Panel = {
  id: 'tiles',
  title: 'Headline figures',
  touches: ['run', 'step', 'eval', 'workers'],
  place: { kind: 'strip', label: 'headline figures' },
  render: renderTiles,
};

function renderHeader(el: HTMLElement, view: RunView): void {
  const facts = view.facts;
  const total = facts?.steps ?? 0;
  const fraction = total > 0 ? Math.min(1, view.step / total) : 0;
  const [label, tone] = status(view);
  const elapsed =
    view.startedMs === null ? 0 : (view.end ? view.end.time : Date.now()) - view.startedMs;
  const perStep = view.msPerStep();
  const eta =
    !view.end && total > view.step && perStep !== undefined ? (total - view.step) * perStep : null;
  mount(
    el,
    h(
      'div',
      { class: 'brand' },
      h('span', { class: 'logo', 'aria-hidden': 'true' }),
      h('span', { class: 'brand-name' }, 'LoRA Fleet'),
    ),
    h(
      'div',
      { class: 'run-title' },
      h('div', { class: 'run-id' }, facts ? facts.runId : 'waiting for the run…'),
      h('div', { class: 'run-model', title: facts?.model }, facts ? facts.model : ''),
    ),
    h(
      'div',
      { class: 'progress' },
      h(
        'div',
        { class: 'progress-text' },
        h('span', {}, `step ${view.step}`, total ? ` / ${total}` : ''),
        h('span', { class: 'muted' }, `epoch ${view.epoch}`),
        h('span', { class: 'muted' }, `${duration(elapsed)} elapsed`),
        eta !== null ? h('span', { class: 'muted' }, `~${duration(eta)} left`) : null,
      ),
      h(
        'div',
        { class: 'bar' },
        h('div', { class: 'bar-fill', 'data-fraction': fraction.toFixed(3) }),
      ),
    ),
    h('span', { class: `pill ${tone}`, 'data-testid': 'run-status' }, label),
  );
  // Widths through the CSSOM, which the page's Content-Security-Policy allows (inline style attributes it does not).
  const fill = el.querySelector<HTMLElement>('.bar-fill');
  if (fill) fill.style.width = `${(fraction * 100).toFixed(1)}%`;
}

function status(view: RunView): [string, string] {
  if (view.end)
    return [
      view.end.status,
      view.end.status === 'finished' ? 'ok' : view.end.status === 'failed' ? 'bad' : 'warn',
    ];
  if (view.connection === 'reconnecting') return ['reconnecting', 'warn'];
  if (view.connection === 'connecting') return ['connecting', 'muted'];
  return ['live', 'live'];
}

function renderTiles(el: HTMLElement, view: RunView): void {
  const last = <T>(series: readonly T[]): T | undefined => series[series.length - 1];
  const loss = last(view.trainLoss)?.[1];
  const evalLoss = last(view.evalLoss)?.[1];
  const accuracy = last(view.evalRewardAccuracy)?.[1]; // preference objectives
  const lr = last(view.lr)?.[1];
  const tps = last(view.tokensPerSecond)?.[1];
  const live = view.workers.filter((w) => view.live(w)).length;
  const tile = (name: string, value: string, note = '', tone = '') =>
    h(
      'div',
      { class: `tile ${tone}` },
      h('div', { class: 'tile-name' }, name),
      h('div', { class: 'tile-value' }, value),
      h('div', { class: 'tile-note' }, note),
    );
  const first = view.trainLoss[0]?.[1];
  mount(
    el,
    tile(
      'train loss',
      loss === undefined ? '–' : loss.toFixed(4),
      first !== undefined && loss !== undefined ? `from ${first.toFixed(3)} at the start` : '',
      'train',
    ),
    tile(
      'eval loss',
      evalLoss === undefined ? '–' : evalLoss.toFixed(4),
      view.evalLoss.length
        ? `at step ${last(view.evalLoss)![0]}${accuracy === undefined ? '' : ` · reward accuracy ${accuracy.toFixed(2)}`}`
        : 'no eval yet',
      'eval',
    ),
    tile('learning rate', lr === undefined ? '–' : num(lr), ''),
    tile(
      `${view.lossUnit} / s`,
      tps === undefined ? '–' : count(tps),
      `${count(view.tokens)} ${view.lossUnit} so far`,
    ),
    tile(
      'workers',
      `${live}`,
      view.facts ? `of ${view.facts.workers} planned · ring gen ${view.generation}` : '',
      live > 0 ? 'ok' : '',
    ),
  );
}
