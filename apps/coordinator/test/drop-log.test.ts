import { describe, expect, it } from 'vitest';
import { DROP_LINES_PER_WINDOW, DROP_WINDOW_MS, DropLog } from '../src/distributed/drop-log.js';

describe('DropLog', () => {
  it('shows the first lines of each window and sums up the rest', () => {
    const lines: string[] = [];
    let now = 0;
    const log = new DropLog(
      (l) => lines.push(l),
      () => now,
    );
    for (let i = 0; i < 2000; i++) log.note(`bad frame ${i}`);
    expect(lines).toEqual(
      Array.from({ length: DROP_LINES_PER_WINDOW }, (_, i) => `bad frame ${i}`),
    );
    now += DROP_WINDOW_MS;
    log.note('bad frame 2000');
    expect(lines.slice(DROP_LINES_PER_WINDOW)).toEqual([
      `coordinator: dropped ${2000 - DROP_LINES_PER_WINDOW} more bad frames (not shown; 2001 in all)`,
      'bad frame 2000',
    ]);
    log.flush(true);
    expect(lines).toHaveLength(DROP_LINES_PER_WINDOW + 2); // nothing hidden since
    expect(log.total).toBe(2001);
  });
});
