import {
  type StreamEnd,
  encodePrompt,
  readGenerationConfig,
  slideKeep,
  streamTokens,
} from '@lorafleet/models';
import { type CommandValues, defineCommand, givenOptions, UsageError } from '../args.js';
import { backendOption, baseDtypeOption, loadModelAndAdapter, startBackend } from '../common.js';

/** --max-new-tokens above this needs --allow-long: a typo should not run for hours. */
export const MAX_NEW_TOKENS = 4096;

export const generateSpec = defineCommand({
  name: 'generate',
  summary:
    'Continue a prompt with a model (and optionally a LoRA adapter), printing tokens as they come; Ctrl-C stops and keeps what was printed (exit 130).',
  options: {
    model: { kind: 'string', value: 'DIR', required: true, description: 'model folder' },
    adapter: { kind: 'string', value: 'DIR', description: 'PEFT adapter folder to apply' },
    prompt: { kind: 'string', value: 'TEXT', required: true, description: 'text to continue' },
    'max-new-tokens': {
      kind: 'int',
      min: 1,
      default: 100,
      description: `tokens to generate at most (up to ${MAX_NEW_TOKENS} without --allow-long)`,
    },
    'allow-long': {
      kind: 'boolean',
      description: `allow --max-new-tokens above ${MAX_NEW_TOKENS}`,
    },
    'context-overflow': {
      kind: 'string',
      choices: ['slide', 'stop'],
      default: 'slide',
      description:
        "past the model's context: slide (drop the oldest half, re-encode the rest once, go on) or stop (with a notice)",
    },
    temperature: {
      kind: 'number',
      min: 0,
      default: 0.8,
      description:
        "sampling temperature, 0 = greedy; when not given: the model folder's generation_config.json (its do_sample false: greedy), else",
    },
    'top-k': {
      kind: 'int',
      min: 0,
      default: 0,
      description:
        "sample among the k most likely tokens, 0 = all; when not given: generation_config.json's top_k, else",
    },
    'top-p': {
      kind: 'number',
      min: 0.000001,
      max: 1,
      default: 1,
      description:
        "nucleus sampling threshold, 1 = off; when not given: generation_config.json's top_p, else",
    },
    seed: { kind: 'int', min: 0, default: 0, description: 'sampling seed' },
    backend: backendOption,
    'base-dtype': baseDtypeOption,
  },
});

/**
 * Temperature, top-k and top-p: each option as given, else the model folder's
 * generation_config.json (do_sample false: greedy), else the option's default;
 * and the file's eos_token_id list as stop tokens.
 */
async function samplingOf(o: CommandValues<typeof generateSpec>) {
  const gen = await readGenerationConfig(o.model);
  const given = givenOptions(o);
  const pick = <T>(flag: string, value: T, fromFile: T | undefined): T =>
    given.has(flag) || fromFile === undefined ? value : fromFile;
  const fileTemperature = gen?.doSample === false ? 0 : gen?.temperature;
  return {
    options: {
      temperature: pick('temperature', o.temperature, fileTemperature),
      topK: pick('top-k', o.topK, gen?.topK),
      topP: pick('top-p', o.topP, gen?.topP),
    },
    stopTokens: gen?.eosTokenIds ?? [],
  };
}

/** Exit status after Ctrl-C, as a shell reports a SIGINT death (128 + 2). */
const INTERRUPTED = 130;

export async function runGenerate(o: CommandValues<typeof generateSpec>): Promise<void> {
  const maxNewTokens = o.maxNewTokens;
  if (maxNewTokens > MAX_NEW_TOKENS && !o.allowLong) {
    throw new UsageError(
      `generate: --max-new-tokens ${maxNewTokens} is above ${MAX_NEW_TOKENS}; pass --allow-long to generate that many`,
    );
  }
  await startBackend(o);
  const sampling = await samplingOf(o);
  const { model, tokenizer } = await loadModelAndAdapter(o.model, o.adapter, o.baseDtype);
  const prompt = o.prompt;
  const ids = encodePrompt(tokenizer, prompt);
  const P = model.modelConfig.contextLength;
  if (ids.length > P) {
    console.warn(
      `warning: the prompt has ${ids.length} tokens, more than the model's context of ${P}: only its last ${P} are read`,
    );
  }
  let interrupted = false;
  const onInterrupt = () => (interrupted = true);
  process.on('SIGINT', onInterrupt);
  const end: StreamEnd = { reason: 'closed', slides: 0 };
  const out: number[] = [];
  let printed = '';
  process.stdout.write(prompt);
  try {
    const tokens = streamTokens(
      model,
      ids,
      {
        maxNewTokens,
        ...sampling.options,
        seed: o.seed,
        stopToken: tokenizer.eosId,
        stopTokens: sampling.stopTokens,
        overflow: o.contextOverflow,
      },
      end,
    );
    for await (const token of tokens) {
      out.push(token);
      // A token may end inside a multi-byte character: print it once complete.
      const text = tokenizer.decode(out);
      if (!text.endsWith('\uFFFD') && text.startsWith(printed)) {
        process.stdout.write(text.slice(printed.length));
        printed = text;
      }
      if (interrupted) break;
    }
  } finally {
    process.off('SIGINT', onInterrupt);
    model.dispose();
  }
  const text = tokenizer.decode(out);
  process.stdout.write(`${text.startsWith(printed) ? text.slice(printed.length) : ''}\n`);
  if (interrupted) {
    console.error(`generate: interrupted (Ctrl-C) after ${out.length} new tokens`);
    process.exitCode = INTERRUPTED;
  } else if (end.reason === 'context-full') {
    console.error(
      `generate: stopped after ${out.length} new tokens: the model's context of ${P} tokens is full (--context-overflow stop; slide goes on, keeping the newest ${slideKeep(P)})`,
    );
  }
}
