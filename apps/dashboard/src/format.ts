// Numbers as a person reads them: 124M, 1.2 MiB, 3.4 s, 2.1e-4.

export function count(n: number): string {
  const abs = Math.abs(n);
  if (abs >= 1e9) return `${trim(n / 1e9)}B`;
  if (abs >= 1e6) return `${trim(n / 1e6)}M`;
  if (abs >= 1e4) return `${trim(n / 1e3)}k`;
  return String(Math.round(n));
}

export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${Math.round(value)} B` : `${trim(value)} ${units[unit]}`;
}

/** A value for a chart axis or a tile: 3 significant digits, exponent when tiny. */
export function num(n: number): string {
  if (!Number.isFinite(n)) return '–';
  if (n === 0) return '0';
  const abs = Math.abs(n);
  if (abs < 1e-3 || abs >= 1e6) return n.toExponential(1).replace('.0e', 'e').replace('e+', 'e');
  return trim(n);
}

export function ms(n: number): string {
  return n >= 1000 ? `${trim(n / 1000)} s` : `${n >= 10 ? Math.round(n) : trim(n)} ms`;
}

export function duration(msTotal: number): string {
  const s = Math.max(0, Math.round(msTotal / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, '0')}m`;
}

/** Age of an epoch-ms time relative to `now`. */
export function ago(time: number, now: number): string {
  if (time <= 0) return 'never';
  const s = (now - time) / 1000;
  return s < 1
    ? 'just now'
    : s < 60
      ? `${s.toFixed(s < 10 ? 1 : 0)} s ago`
      : `${duration(now - time)} ago`;
}

export function clock(time: number): string {
  const d = new Date(time);
  return [d.getHours(), d.getMinutes(), d.getSeconds()]
    .map((x) => String(x).padStart(2, '0'))
    .join(':');
}

function trim(n: number): string {
  return Number(n.toPrecision(3)).toString();
}
