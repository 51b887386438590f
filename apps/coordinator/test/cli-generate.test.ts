// `lorafleet generate` as a user runs it, with real processes: tokens reach
// stdout while it still runs, Ctrl-C (SIGINT) keeps what was printed and
// exits 130, --max-new-tokens is bounded unless --allow-long, past the
// context it slides or stops with a notice, a cut prompt is warned about,
// and generation_config.json gives the defaults where no option is given.
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  REPO_ROOT,
  ensureBuilt,
  initTinyModel,
  lorafleet,
  lorafleetOk,
  makeTempDir,
  removeDir,
} from './helpers.js';

const BIN = join(REPO_ROOT, 'apps', 'coordinator', 'bin', 'lorafleet.js');

let dir: string | undefined;
let base: string;

beforeAll(async () => {
  await ensureBuilt();
  dir = await makeTempDir('generate');
  base = await initTinyModel(dir, 'base'); // context 64
}, 300_000);

afterAll(() => removeDir(dir));

const PROMPT = 'abc';

describe.concurrent('lorafleet generate', () => {
  it('streams tokens, and Ctrl-C prints what was generated and exits 130', async () => {
    const child = spawn(
      process.execPath,
      [
        BIN,
        'generate',
        ...['--model', base, '--prompt', PROMPT, '--temperature', '0'],
        ...['--max-new-tokens', '1000000', '--allow-long'],
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    // Tokens arrive while the process runs: wait for some past the prompt.
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no tokens streamed: ${stderr}`)), 60_000);
      child.stdout.setEncoding('utf8').on('data', (s: string) => {
        stdout += s;
        if (stdout.length > PROMPT.length + 20) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    const atSignal = stdout;
    child.kill('SIGINT');
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code).toBe(130);
    expect(stdout.startsWith(atSignal)).toBe(true);
    expect(stdout.startsWith(PROMPT)).toBe(true);
    expect(stdout.endsWith('\n')).toBe(true);
    expect(stderr).toMatch(/generate: interrupted \(Ctrl-C\) after \d+ new tokens/);
    const tokens = Number(/after (\d+) new tokens/.exec(stderr)![1]);
    // Far fewer than asked: it was stopped mid-way, not run to the end.
    expect(tokens).toBeGreaterThan(10);
    expect(tokens).toBeLessThan(1_000_000);
  });

  it('bounds --max-new-tokens unless --allow-long', async () => {
    const result = await lorafleet([
      'generate',
      ...['--model', base, '--prompt', PROMPT, '--max-new-tokens', '5000'],
    ]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(
      'lorafleet generate: --max-new-tokens 5000 is above 4096; pass --allow-long to generate that many',
    );
    const help = await lorafleetOk(['generate', '--help']);
    expect(help.stdout).toContain('--allow-long');
    expect(help.stdout).toContain('--context-overflow');
  });

  it('goes past the context by sliding, or stops there with a notice', async () => {
    const args = ['generate', '--model', base, '--prompt', PROMPT, '--temperature', '0'];
    const slid = await lorafleetOk([...args, '--max-new-tokens', '200']);
    const stopped = await lorafleetOk([
      ...args,
      ...['--max-new-tokens', '200', '--context-overflow', 'stop'],
    ]);
    // 64 positions, 3 of them the prompt's: the 62nd token is read off a full context.
    expect(stopped.stderr).toContain(
      "generate: stopped after 62 new tokens: the model's context of 64 tokens is full",
    );
    expect(slid.stderr).not.toContain('stopped');
    // Greedy: the same start, then the slid run goes on (200 tokens, byte tokenizer).
    const common = stopped.stdout.slice(0, 40);
    expect(slid.stdout.startsWith(common)).toBe(true);
    expect(slid.stdout.length).toBeGreaterThan(stopped.stdout.length + 60);
  });

  it('warns when the prompt is longer than the context', async () => {
    const long = 'x'.repeat(100);
    const result = await lorafleetOk([
      'generate',
      ...['--model', base, '--prompt', long, '--max-new-tokens', '3'],
    ]);
    expect(result.stderr).toContain(
      "warning: the prompt has 100 tokens, more than the model's context of 64: only its last 64 are read",
    );
    expect(result.stdout.startsWith(long)).toBe(true);
  });
});

describe('lorafleet generate and generation_config.json', () => {
  it('takes do_sample, temperature and eos_token_id from the file unless the option is given', async () => {
    const plain = await initTinyModel(dir!, 'gen-plain');
    const withFile = await initTinyModel(dir!, 'gen-file'); // the same seed: the same weights
    const gen = (folder: string, ...args: string[]) =>
      lorafleetOk([
        'generate',
        '--model',
        folder,
        '--prompt',
        'abc',
        '--max-new-tokens',
        '24',
        ...args,
      ]);
    const greedy = (await gen(plain, '--temperature', '0')).stdout;
    const sampled = (await gen(plain, '--temperature', '0.8')).stdout;
    expect(sampled).not.toBe(greedy);

    await writeFile(join(withFile, 'generation_config.json'), JSON.stringify({ do_sample: false }));
    expect((await gen(withFile)).stdout).toBe(greedy); // do_sample false: greedy
    expect((await gen(withFile, '--temperature', '0.8')).stdout).toBe(sampled); // the option wins

    // eos_token_id (a list): the first generated byte is one of them, so nothing follows the prompt.
    const first = Buffer.from(greedy)[3]!;
    expect(first).toBeLessThan(128); // an ASCII byte: its own token in the byte tokenizer
    const file = { do_sample: false, eos_token_id: [first === 119 ? 120 : 119, first] };
    await writeFile(join(withFile, 'generation_config.json'), JSON.stringify(file));
    expect((await gen(withFile)).stdout).toBe('abc\n');
  });
});
