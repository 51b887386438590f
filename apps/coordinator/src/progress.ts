// Progress for long work: a redrawn bar on a terminal, plain lines otherwise
// (logs, CI), never more than a few updates a second.
export interface ProgressOptions {
  label: string;
  total: number;
  stream?: NodeJS.WriteStream;
  /** Plain-line mode: print every this many units (default: about 20 lines per run). */
  every?: number;
}

export class Progress {
  private readonly stream: NodeJS.WriteStream;
  private readonly tty: boolean;
  private readonly every: number;
  private readonly started = performance.now();
  private lastDraw = 0;
  private lastLine = '';

  constructor(private readonly options: ProgressOptions) {
    this.stream = options.stream ?? process.stderr;
    this.tty = Boolean(this.stream.isTTY) && process.env.CI === undefined;
    this.every = options.every ?? Math.max(1, Math.round(options.total / 20));
  }

  update(done: number, fields: Record<string, string> = {}): void {
    const { total, label } = this.options;
    const details = Object.entries(fields)
      .map(([k, v]) => `${k} ${v}`)
      .join('  ');
    const elapsed = (performance.now() - this.started) / 1000;
    const eta = done > 0 ? (elapsed / done) * (total - done) : NaN;
    const time = `${formatSeconds(elapsed)}<${Number.isFinite(eta) ? formatSeconds(eta) : '?'}`;
    if (this.tty) {
      const now = performance.now();
      if (now - this.lastDraw < 100 && done < total) return;
      this.lastDraw = now;
      const width = 24;
      const filled = Math.round((width * done) / Math.max(1, total));
      const bar = `${'█'.repeat(filled)}${'░'.repeat(width - filled)}`;
      const line = `${label} ${bar} ${done}/${total} ${time}  ${details}`;
      const columns = this.stream.columns ?? 120;
      this.stream.write(
        `\r${line.slice(0, columns - 1).padEnd(Math.min(columns - 1, this.lastLine.length))}`,
      );
      this.lastLine = line;
    } else if (done === total || done % this.every === 0 || done === 1) {
      this.stream.write(`${label} ${done}/${total} ${time}  ${details}\n`);
    }
  }

  /** Ends the bar's line (terminal mode). */
  finish(): void {
    if (this.tty && this.lastLine) this.stream.write('\n');
    this.lastLine = '';
  }
}

export function formatSeconds(s: number): string {
  if (s < 60) return `${s.toFixed(0)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.floor(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}
