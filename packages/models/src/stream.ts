// One prompt, token by token, for an interactive reader: each token is handed
// over as soon as it is sampled, the event loop runs between tokens (so
// Ctrl-C can stop it), and the context never stops it: past n_positions the
// oldest tokens are dropped in a block (keeping the newest half) and the kept
// ones re-encoded into a fresh KV cache once, not per token.
import type { tf } from '@lorafleet/core';
import { Rng } from '@lorafleet/core';
import { type SamplingOptions, sampleToken, validateSampling } from './generate.js';
import type { CausalLM } from './causal-lm.js';
import { type KvCache, decodeStep, prefill } from './kv-cache.js';

export interface StreamOptions extends SamplingOptions {
  maxNewTokens: number;
  seed: number;
  /** Stop when this token is produced (it is not yielded). */
  stopToken?: number;
  /** Stop when any of these is produced (generation_config.json's eos_token_id list). */
  stopTokens?: readonly number[];
  /** Past the context: 'slide' re-encodes the newest half and goes on; 'stop' ends. */
  overflow: 'slide' | 'stop';
}

/** Why a stream ended; set when the generator returns. */
export interface StreamEnd {
  reason: 'max-new-tokens' | 'stop-token' | 'context-full' | 'closed';
  /** How many times the window slid (a block re-encode each). */
  slides: number;
}

/** Tokens kept when the window slides: the newest half of the context. */
export function slideKeep(nPositions: number): number {
  return Math.max(1, Math.floor(nPositions / 2));
}

/**
 * Yields the new tokens of `prompt`'s continuation. A prompt longer than the
 * context is read from its last n_positions tokens (the caller warns).
 * `end` is filled in when the generator finishes.
 */
export async function* streamTokens(
  model: CausalLM,
  prompt: readonly number[],
  options: StreamOptions,
  end: StreamEnd = { reason: 'closed', slides: 0 },
): AsyncGenerator<number, void, undefined> {
  validateSampling(options);
  if (!Number.isInteger(options.maxNewTokens) || options.maxNewTokens < 0)
    throw new Error(`maxNewTokens must be an integer >= 0, got ${options.maxNewTokens}`);
  if (prompt.length === 0) throw new Error('the prompt is empty: give at least one token');
  const P = model.modelConfig.contextLength;
  const rng = new Rng(options.seed);
  let context = prompt.slice(-P);
  let cache: KvCache | undefined;
  let last: tf.Tensor2D | undefined; // [1, C]
  end.reason = 'closed';
  try {
    ({ cache, last } = prefill(model, [context]));
    for (let n = 0; n < options.maxNewTokens; n++) {
      const head = model.logits(last!); // [1, V]
      // An asynchronous read: the only kind a GPU backend (webgpu under Node) allows.
      const logits = (await head.data()) as Float32Array; // [V]
      head.dispose();
      const next = sampleToken(logits, options, rng.uniform());
      last!.dispose();
      last = undefined;
      if (next === options.stopToken || options.stopTokens?.includes(next)) {
        end.reason = 'stop-token';
        return;
      }
      yield next;
      context.push(next);
      if (context.length <= P) {
        last = decodeStep(model, cache, [next]); // the token at position context.length - 1
      } else if (options.overflow === 'stop') {
        end.reason = 'context-full';
        return;
      } else {
        cache.dispose();
        context = context.slice(-slideKeep(P));
        ({ cache, last } = prefill(model, [context]));
        end.slides++;
      }
      // A macrotask, so signal handlers (Ctrl-C) run between tokens.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    end.reason = 'max-new-tokens';
  } finally {
    last?.dispose();
    cache?.dispose();
  }
}
