// apps/coordinator/scripts/preference-pairs.mjs as users run it (README,
// docs/preference-tuning.md): {"text"} lines in, TRL preference lines out, in a folder it
// makes; a missing or broken input says what is wrong.
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT, makeTempDir, removeDir } from './helpers.js';

const SCRIPT = join(REPO_ROOT, 'apps', 'coordinator', 'scripts', 'preference-pairs.mjs');
const run = (...args: string[]) =>
  promisify(execFile)(process.execPath, [SCRIPT, ...args]).then(
    (r) => ({ code: 0, ...r }),
    (e: { code: number; stdout: string; stderr: string }) => e,
  );

let dir: string | undefined;
beforeAll(async () => {
  dir = await makeTempDir('preference-pairs');
});
afterAll(() => removeDir(dir));

describe('preference-pairs.mjs', () => {
  it('cuts each sentence at a space near its middle: the true end is chosen, its words reversed rejected', async () => {
    const input = join(dir!, 'in.jsonl');
    const sentences = [
      'The film was a quiet triumph of small gestures.',
      'short',
      'Delegates adopted the resolution without a vote on Tuesday.',
    ];
    await writeFile(input, sentences.map((text) => JSON.stringify({ text })).join('\n') + '\n');
    const out = join(dir!, 'made', 'here', 'pairs.jsonl'); // a folder that does not exist yet
    const r = await run(input, out, '--limit', '5');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`${out}: 2 preference pairs from ${input}`);
    const pairs = (await readFile(out, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { prompt: string; chosen: string; rejected: string });
    expect(pairs[0]).toEqual({
      prompt: 'The film was a quiet triumph ',
      chosen: 'of small gestures.',
      rejected: 'gestures. small of',
    });
    pairs.forEach((p, i) => expect(p.prompt + p.chosen).toBe(sentences[i === 0 ? 0 : 2]));
  });

  it("--unpaired writes KTO's lines: each pair as a desirable and an undesirable completion", async () => {
    const input = join(dir!, 'kto-in.jsonl');
    await writeFile(
      input,
      JSON.stringify({ text: 'The film was a quiet triumph of small gestures.' }) + '\n',
    );
    const out = join(dir!, 'kto.jsonl');
    const r = await run(input, out, '--unpaired');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(
      `${out}: 1 preference pairs, as two unpaired examples each, from ${input}`,
    );
    const lines = (await readFile(out, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as unknown);
    expect(lines).toEqual([
      { prompt: 'The film was a quiet triumph ', completion: 'of small gestures.', label: true },
      { prompt: 'The film was a quiet triumph ', completion: 'gestures. small of', label: false },
    ]);
  });

  it('says what is wrong with a missing file or a line that is not JSON', async () => {
    const missing = await run(join(dir!, 'nope.jsonl'), join(dir!, 'x.jsonl'));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('nope.jsonl: no such file');
    const bad = join(dir!, 'bad.jsonl');
    await writeFile(bad, '{"text": "fine"}\nnot json\n');
    const broken = await run(bad, join(dir!, 'y.jsonl'));
    expect(broken.code).toBe(1);
    expect(broken.stderr).toContain('bad.jsonl:2: not JSON');
    const usage = await run(bad);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('usage:');
  });
});
