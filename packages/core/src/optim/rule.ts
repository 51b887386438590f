// What every optimizer of optimizer.ts implements: its state tensors (torch's
// names and shapes) and one update over the fused parameters.

/** One trained tensor in the fused parameters: where it starts, and its shape (torch's). */
export interface SlotLayout {
  readonly offset: number;
  readonly size: number;
  readonly shape: readonly number[];
}

/** The optimizer's whole state: the steps taken and torch's state tensors, each fused over the slots. */
export interface OptimizerState {
  step: number;
  buffers: Record<string, Float32Array>;
}

/** What one update reads besides parameters, gradients and state (state.step already counts it). */
export interface UpdateContext {
  /** The step's learning rate (the schedule's). */
  lr: number;
  /** Each element's factor of `lr` (LoRA+), or null for 1. */
  lrScales: Float64Array | null;
  /** Each element's factor of the weight decay (Trainer's exemptions), or null for 1. */
  decayScales: Float64Array | null;
  layout: readonly SlotLayout[];
}

export interface OptimizerRule<O> {
  /** How logs name it ("AdamW", "SGD"). */
  readonly title: string;
  /** torch's state names for a parameter of `shape`, each with its tensor's shape (null: none for it). */
  stateShapes(options: O, shape: readonly number[]): Record<string, readonly number[] | null>;
  /** One update in place on `params` and `state.buffers`. */
  update(
    params: Float32Array,
    grads: Float32Array,
    state: OptimizerState,
    options: O,
    context: UpdateContext,
  ): void;
}

/** An element's learning rate and weight decay (a torch group's: lr * ratio, in float64). */
export function elementRates(
  i: number,
  lr: number,
  weightDecay: number,
  { lrScales, decayScales }: Pick<UpdateContext, 'lrScales' | 'decayScales'>,
): [number, number] {
  return [
    lrScales ? lr * lrScales[i]! : lr,
    decayScales ? weightDecay * decayScales[i]! : weightDecay,
  ];
}
