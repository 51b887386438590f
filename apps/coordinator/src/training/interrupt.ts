// Ctrl-C during training: the first finishes the step in flight and saves,
// the second quits at once. One place for both train paths.

export interface Interrupt {
  /** Whether Ctrl-C was pressed. */
  readonly requested: boolean;
  /** Stops listening (after the loop). */
  dispose(): void;
}

export function onInterrupt(): Interrupt {
  let requested = false;
  const handler = () => {
    if (requested) process.exit(130);
    requested = true;
    console.error(
      '\ninterrupted: finishing this step and saving; press Ctrl-C again to quit at once',
    );
  };
  process.on('SIGINT', handler);
  return {
    get requested() {
      return requested;
    },
    dispose: () => process.off('SIGINT', handler),
  };
}
