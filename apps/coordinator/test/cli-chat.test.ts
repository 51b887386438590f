// `lorafleet train --data chat.jsonl` on a model folder whose tokenizer is a
// tokenizer.json with a chat template (ChatML, as Qwen writes it): the rows
// are rendered, trained on the assistant turns (also as DPO's conversational
// preference pairs), and a folder without a chat_template is refused with an
// error that says so.
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  TINY_CONFIG,
  ensureBuilt,
  initTinyModel,
  lorafleet,
  makeTempDir,
  removeDir,
  writeJsonl,
} from './helpers.js';

const CHATML =
  "{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/** A byte-level BPE tokenizer.json: the 256 byte symbols (ids 0..255), no merges, two control tokens. */
function byteLevelTokenizerJson(): object {
  const printable = (b: number): boolean =>
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
  const vocab: Record<string, number> = {};
  let shifted = 0;
  for (let b = 0; b < 256; b++) vocab[String.fromCharCode(printable(b) ? b : 256 + shifted++)] = b;
  const added = (id: number, content: string) => ({
    id,
    content,
    special: true,
    normalized: false,
  });
  return {
    version: '1.0',
    added_tokens: [added(256, '<|im_start|>'), added(257, '<|im_end|>')],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, use_regex: true },
    post_processor: { type: 'ByteLevel' },
    decoder: { type: 'ByteLevel' },
    model: { type: 'BPE', vocab, merges: [] },
  };
}

let dir: string | undefined;
let model: string;
let data: string;

beforeAll(async () => {
  await ensureBuilt();
  dir = await makeTempDir('chat');
  model = await initTinyModel(dir, 'chat-model', 0, { ...TINY_CONFIG, vocab_size: 258 });
  await writeFile(join(model, 'tokenizer.json'), JSON.stringify(byteLevelTokenizerJson()));
  data = await writeJsonl(
    join(dir, 'chat.jsonl'),
    Array.from({ length: 8 }, (_, i) => ({
      messages: [
        { role: 'user', content: `add ${i} and 1` },
        { role: 'assistant', content: `${i + 1}` },
      ],
    })),
  );
}, 300_000);

afterAll(() => removeDir(dir));

const train = (out: string, ...more: string[]) =>
  lorafleet([
    'train',
    '--model',
    model,
    '--data',
    data,
    '--out',
    join(dir!, out),
    '--steps',
    '2',
    '--seq-len',
    '48',
    ...more,
  ]);

describe('chat data through lorafleet train', () => {
  it('trains on {"messages"} rows rendered with the folder\'s chat_template', async () => {
    await writeFile(
      join(model, 'tokenizer_config.json'),
      JSON.stringify({ eos_token: '<|im_end|>', chat_template: CHATML }),
    );
    const { code, stdout, stderr } = await train('with-template');
    expect(code, stderr).toBe(0);
    // One example per row, padded (labels are masked outside the replies).
    expect(stdout).toContain('8 examples');
    expect(stdout).toContain('(padded)');
    // Two workers render and tokenize the rows themselves; the coordinator checks their rows' fingerprint.
    const two = await train('two-workers', '--workers', '2');
    expect(two.code, two.stderr).toBe(0);
    expect(two.stdout).toContain('8 examples');
  }, 240_000);

  it("trains DPO on conversational preference pairs (TRL's implicit prompt: the shared first messages)", async () => {
    await writeFile(
      join(model, 'tokenizer_config.json'),
      JSON.stringify({ eos_token: '<|im_end|>', chat_template: CHATML }),
    );
    const user = (i: number) => ({ role: 'user', content: `add ${i} and 1` });
    const reply = (content: string) => ({ role: 'assistant', content });
    const pairs = await writeJsonl(
      join(dir!, 'pairs.jsonl'),
      Array.from({ length: 8 }, (_, i) => ({
        chosen: [user(i), reply(`${i + 1}`)],
        rejected: [user(i), reply(`${i + 2}`)],
      })),
    );
    const { code, stdout, stderr } = await lorafleet([
      'train',
      ...['--model', model, '--data', pairs, '--eval-fraction', '0.25', '--out', join(dir!, 'dpo')],
      ...['--objective', 'dpo', '--steps', '2', '--seq-len', '48', '--workers', '2'],
    ]);
    expect(code, stderr).toBe(0);
    expect(stdout).toContain('8 preference pairs -> 8 rows of 2 x 48 (chosen | rejected)');
    expect(stdout).toMatch(
      /eval loss before: 0\.6931 \(DPO loss, 2 pairs; reward accuracy 0\.0000/,
    );
  }, 240_000);

  it("--no-assistant-only-loss trains every token of a conversation, --no-completion-only-loss a prompt's too (TRL's flags)", async () => {
    await writeFile(
      join(model, 'tokenizer_config.json'),
      JSON.stringify({ eos_token: '<|im_end|>', chat_template: CHATML }),
    );
    const split = await writeJsonl(
      join(dir!, 'prompt-completion.jsonl'),
      Array.from({ length: 8 }, (_, i) => ({
        prompt: [{ role: 'user', content: `add ${i} and 1` }],
        completion: [{ role: 'assistant', content: `${i + 1}` }],
      })),
    );
    const lossTokens = async (file: string, ...more: string[]): Promise<number> => {
      const r = await lorafleet([
        'eval',
        '--model',
        model,
        '--data',
        file,
        '--seq-len',
        '48',
        ...more,
      ]);
      expect(r.code, r.stderr).toBe(0);
      return Number(/over (\d+) tokens/.exec(r.stdout)![1]);
    };
    // Each row renders as 33 tokens: "<|im_start|>user\nadd i and 1<|im_end|>\n"
    // (19), "<|im_start|>assistant\n" (11), "X<|im_end|>\n" (3). The loss
    // predicts every trained token but the first of the row.
    const reply = 8 * 2; // "X<|im_end|>"
    const whole = 8 * 32;
    expect(await lossTokens(data)).toBe(reply);
    expect(await lossTokens(data, '--no-assistant-only-loss')).toBe(whole);
    expect(await lossTokens(split)).toBe(reply);
    expect(await lossTokens(split, '--no-completion-only-loss')).toBe(reply);
    expect(await lossTokens(split, '--no-assistant-only-loss')).toBe(8 * 3);
    expect(await lossTokens(split, '--no-assistant-only-loss', '--no-completion-only-loss')).toBe(
      whole,
    );
    // Conversations stay one example per row under --packing auto.
    const { code, stdout, stderr } = await train('every-token', '--no-assistant-only-loss');
    expect(code, stderr).toBe(0);
    expect(stdout).toContain('8 examples, 264 tokens -> 8 rows of 48 (padded)');
  }, 240_000);

  it('refuses them, saying why, when tokenizer_config.json has no chat_template', async () => {
    await writeFile(
      join(model, 'tokenizer_config.json'),
      JSON.stringify({ eos_token: '<|im_end|>' }),
    );
    const { code, stderr } = await train('without-template');
    expect(code).toBe(1);
    expect(stderr).toContain(`${data}:1: this row is a conversation`);
    expect(stderr).toContain('has no "chat_template"');
    await rm(join(dir!, 'without-template'), { recursive: true, force: true });
  }, 120_000);
});
