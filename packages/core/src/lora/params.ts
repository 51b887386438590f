// The trainable parameters of a model as one fused Float32Array in a fixed
// order (for LoRA: module path, then A before B, then DoRA's magnitude). This order is the contract
// that gradient all-reduce, optimizer state and checkpoints rely on.
import { tf } from '../backend/tf.js';
import type { LoraLinear } from './linear.js';
import type { SlotLayout } from '../optim/rule.js';

export interface ParameterSlot {
  /** E.g. "<module path>.lora_A" for LoRA, "transformer.wte.weight" for a full fine-tune. */
  name: string;
  variable: tf.Variable;
  offset: number;
  size: number;
}

export class TrainableParameters {
  readonly slots: readonly ParameterSlot[];
  readonly size: number;

  /**
   * Named variables in the given order; they are marked trainable (tfjs
   * skips frozen variables when differentiating).
   */
  constructor(named: readonly (readonly [string, tf.Variable])[]) {
    const slots: ParameterSlot[] = [];
    const seen = new Set<string>();
    let offset = 0;
    for (const [name, variable] of named) {
      if (seen.has(name)) throw new Error(`parameter "${name}" is listed twice`);
      seen.add(name);
      variable.trainable = true;
      slots.push({ name, variable, offset, size: variable.size });
      offset += variable.size;
    }
    this.slots = slots;
    this.size = offset;
  }

  /** The active adapter of each layer, layers ordered by module path, A before B (then DoRA's m). */
  static fromLoraLayers(layers: readonly LoraLinear[]): TrainableParameters {
    const sorted = [...layers].sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
    return new TrainableParameters(
      sorted.flatMap((layer) => {
        const adapter = layer.activeAdapter;
        if (!adapter) throw new Error(`${layer.name}: no active adapter to train`);
        return [
          [`${layer.name}.lora_A`, adapter.a] as const,
          [`${layer.name}.lora_B`, adapter.b] as const,
          ...(adapter.magnitude
            ? [[`${layer.name}.lora_magnitude_vector`, adapter.magnitude] as const]
            : []),
        ];
      }),
    );
  }

  get variables(): tf.Variable[] {
    return this.slots.map((slot) => slot.variable);
  }

  /** Each slot's place and shape in the fused values (what an optimizer's state is laid out by). */
  get layout(): SlotLayout[] {
    return this.slots.map(({ offset, size, variable }) => ({
      offset,
      size,
      shape: variable.shape,
    }));
  }

  /** All values, fused. */
  read(): Float32Array {
    const out = new Float32Array(this.size);
    for (const slot of this.slots) out.set(slot.variable.dataSync() as Float32Array, slot.offset);
    return out;
  }

  /** Assigns fused values back to the variables. */
  write(values: Float32Array): void {
    this.assertSize(values, 'values');
    for (const slot of this.slots) {
      const piece = values.subarray(slot.offset, slot.offset + slot.size);
      tf.tidy(() => slot.variable.assign(tf.tensor(piece, slot.variable.shape)));
    }
  }

  /**
   * Runs `loss` (a scalar) under autodiff with respect to these parameters only
   * and returns the loss value and the fused gradient. No tensor outlives the call.
   */
  lossAndGrads(loss: () => tf.Scalar): { loss: number; grads: Float32Array } {
    const grads = new Float32Array(this.size);
    const value = tf.tidy(() => {
      const { value, grads: named } = tf.variableGrads(loss, this.variables);
      for (const slot of this.slots) {
        const g = named[slot.variable.name];
        if (!g)
          throw new Error(`no gradient reached ${slot.name}: is the layer on the loss's path?`);
        grads.set(g.dataSync() as Float32Array, slot.offset);
      }
      return value.dataSync()[0] ?? NaN;
    });
    return { loss: value, grads };
  }

  private assertSize(buf: Float32Array, what: string): void {
    if (buf.length !== this.size) {
      throw new Error(`${what} hold ${buf.length} values, the parameters need ${this.size}`);
    }
  }
}
