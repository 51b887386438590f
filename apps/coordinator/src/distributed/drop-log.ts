// Log lines about dropped frames, rate-limited: a peer sending junk must not
// flood the log (2,000 lines for 2,000 frames). The first few of each window
// are shown; the rest are counted and summed up in one line.

/** Lines shown per window; the rest are counted. */
export const DROP_LINES_PER_WINDOW = 5;
export const DROP_WINDOW_MS = 10_000;

export class DropLog {
  private windowStart = -Infinity;
  private shown = 0;
  private hidden = 0;
  /** Every drop ever noted, shown or not. */
  total = 0;

  constructor(
    private readonly log: (line: string) => void,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Notes one dropped frame: logs `line`, or counts it when the window's quota is spent. */
  note(line: string): void {
    this.total++;
    this.flush();
    if (this.shown < DROP_LINES_PER_WINDOW) {
      this.shown++;
      this.log(line);
    } else this.hidden++;
  }

  /** Starts a new window when the current one is over (or `now`), summing up what it did not show. */
  flush(force = false): void {
    const now = this.now();
    if (!force && now - this.windowStart < DROP_WINDOW_MS) return;
    if (this.hidden > 0) {
      this.log(
        `coordinator: dropped ${this.hidden} more bad frames (not shown; ${this.total} in all)`,
      );
    }
    this.windowStart = now;
    this.shown = 0;
    this.hidden = 0;
  }
}
