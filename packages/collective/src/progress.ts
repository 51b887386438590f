// A count that only grows, and waits for it to reach a number: how far one side of
// an all-reduce call (pieces arrived, pieces sent) has got, for the other side.

export class Progress {
  private count = 0;
  private failure: Error | undefined;
  private readonly waiting: { count: number; resolve: () => void; reject: (e: Error) => void }[] =
    [];

  get value(): number {
    return this.count;
  }

  advance(): void {
    this.count++;
    for (let i = this.waiting.length - 1; i >= 0; i--) {
      const w = this.waiting[i]!;
      if (this.count < w.count) continue;
      this.waiting.splice(i, 1);
      w.resolve();
    }
  }

  /** Resolves once the count reaches `count`; rejects if fail() comes first. */
  reach(count: number): Promise<void> | void {
    if (this.failure) return Promise.reject(this.failure);
    if (this.count >= count) return;
    return new Promise((resolve, reject) => this.waiting.push({ count, resolve, reject }));
  }

  /** The other side failed: every wait, now and later, rejects with `error`. */
  fail(error: Error): void {
    this.failure = error;
    for (const w of this.waiting.splice(0)) w.reject(error);
  }
}

/**
 * Awaits both sides of one call. When `leading` fails, `progress` (what the other side waits
 * on) fails with it, so that side's waits end too; the call rejects with the first failure,
 * the story, and the other side's consequent failure is dropped.
 */
export async function bothSides(
  leading: Promise<void>,
  progress: Progress,
  other: Promise<void>,
): Promise<void> {
  const first = leading.catch((error: unknown) => {
    progress.fail(error as Error);
    throw error;
  });
  first.catch(() => undefined);
  other.catch(() => undefined);
  await Promise.all([first, other]);
}
