// @ts-check
// Greedy generation for the quality benchmark: one hypothesis per E2E MR,
// from the base model, the base + a LoRA adapter, or a fully fine-tuned
// model, with the models package's batched KV-cache decoder (generateBatch)
// when the build has it and one prompt at a time (generate) otherwise.
import { importAdapter, loadPeftAdapter } from '../../../packages/core/dist/src/index.js';
import * as models from '../../../packages/models/dist/src/index.js';

/** The adapter name `lorafleet` uses (apps/coordinator/src/common.ts). */
const ADAPTER_NAME = 'default';

/** Prompts per generateBatch call: also how often progress is printed. */
const CHUNK = 32;

/**
 * @typedef {object} GenerationOptions
 * @property {string} modelDir
 * @property {string} [adapterDir] PEFT adapter folder to apply to the model.
 * @property {number} maxNewTokens Also ended by EOS, a newline or the model's context.
 * @property {string} label For the progress lines.
 */

/**
 * Greedy continuations of `prompts`, each cut at its first newline and trimmed.
 * @param {readonly string[]} prompts
 * @param {GenerationOptions} options
 * @returns {Promise<{ hypotheses: string[], decoder: string, newTokens: number }>}
 */
export async function generateHypotheses(prompts, options) {
  const { model, tokenizer, config } = await models.loadModel(options.modelDir);
  try {
    if (options.adapterDir) {
      importAdapter(model.linears(), await loadPeftAdapter(options.adapterDir), ADAPTER_NAME);
    }
    const ids = prompts.map((p) => tokenizer.encode(p));
    const P = config.nPositions;
    const sampling = { temperature: 0, topK: 0, topP: 1, seed: 0, stopToken: tokenizer.eosId };
    const batched = typeof models.generateBatch === 'function';
    /** @type {(chunk: number[][]) => Promise<number[][]>} */
    const decode = batched
      ? (chunk) =>
          models.generateBatch(model, chunk, {
            ...sampling,
            maxNewTokens: options.maxNewTokens,
            overflow: 'stop',
            batchSize: CHUNK,
          })
      : (chunk) =>
          Promise.all(
            chunk.map((p) =>
              models.generate(model, p, {
                ...sampling,
                maxNewTokens: Math.max(0, Math.min(options.maxNewTokens, P - p.length)),
              }),
            ),
          );
    // Similar lengths together keep a batch's left padding small.
    const order = [...ids.keys()].sort((a, b) => (ids[a]?.length ?? 0) - (ids[b]?.length ?? 0));
    /** @type {number[][]} */
    const outputs = new Array(ids.length);
    const started = performance.now();
    for (let s = 0; s < order.length; s += CHUNK) {
      const rows = order.slice(s, s + CHUNK);
      const produced = await decode(rows.map((i) => /** @type {number[]} */ (ids[i])));
      rows.forEach((i, k) => (outputs[i] = produced[k] ?? []));
      const seconds = (performance.now() - started) / 1000;
      console.log(
        `  generate ${options.label}: ${Math.min(s + CHUNK, order.length)}/${order.length} (${seconds.toFixed(1)} s)`,
      );
    }
    const hypotheses = outputs.map((out) => (tokenizer.decode(out).split('\n')[0] ?? '').trim());
    const newTokens = outputs.reduce((n, out) => n + out.length, 0);
    return { hypotheses, decoder: batched ? 'generateBatch (KV cache)' : 'generate', newTokens };
  } finally {
    model.dispose();
  }
}
