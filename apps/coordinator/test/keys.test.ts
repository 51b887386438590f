// `lorafleet keys` as a user runs it: the files it writes, their format and
// modes, that it never overwrites a key, and that the two keys of a file are
// one CURVE pair (a handshake with them succeeds).
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Dealer, Router } from 'zeromq';
import { ensureBuilt, lorafleet, lorafleetOk, makeTempDir, removeDir } from './helpers.js';

const Z85_KEY = '[0-9a-zA-Z.\\-:+=^!/*?&<>()[\\]{}@%$#]{40}';

let dir: string | undefined;
beforeAll(async () => {
  await ensureBuilt();
  dir = await makeTempDir('keys');
}, 300_000);
afterAll(() => removeDir(dir));

/** The `key = "value"` lines of a key file, by name; comments and blank lines skipped. */
function keyLines(file: string): Record<string, string> {
  const lines = readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '' && !l.startsWith('#'));
  const entries = lines.map((line) => {
    const match = new RegExp(`^(public-key|secret-key) = "(${Z85_KEY})"$`).exec(line);
    expect(match, `${file}: ${line}`).not.toBeNull();
    return [match![1]!, match![2]!] as const;
  });
  return Object.fromEntries(entries);
}

describe('lorafleet keys', () => {
  it('writes NAME.key (0600, both keys) and NAME.pub, and prints the public key and its use', async () => {
    const out = join(dir!, 'keys');
    const { stdout } = await lorafleetOk(['keys', '--out', out, '--name', 'w1']);
    const pair = keyLines(join(out, 'w1.key'));
    expect(Object.keys(pair).sort()).toEqual(['public-key', 'secret-key']);
    expect(keyLines(join(out, 'w1.pub'))).toEqual({ 'public-key': pair['public-key'] });
    expect(statSync(join(out, 'w1.key')).mode & 0o777).toBe(0o600);
    expect(stdout).toContain(`public key: ${pair['public-key']}`);
    expect(stdout).toContain(`--curve-key ${join(out, 'w1.key')} --server-key coordinator.pub`);
    expect(stdout).toMatch(/--authorized-keys DIR/);
  });

  it('refuses to overwrite an existing key, leaving it as it was', async () => {
    const out = join(dir!, 'again');
    await lorafleetOk(['keys', '--out', out, '--name', 'coordinator']);
    const before = readFileSync(join(out, 'coordinator.key'), 'utf8');
    const again = await lorafleet(['keys', '--out', out, '--name', 'coordinator']);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/coordinator\.key exists; refusing to overwrite/);
    expect(readFileSync(join(out, 'coordinator.key'), 'utf8')).toBe(before);
  });

  it.each([
    [['--out', 'x', '--name', '../up'], /--name "..\/up": use letters, digits/],
    [['--name', 'w1'], /--out is required/],
  ])('refuses bad usage %j with exit 2', async (args, message) => {
    const result = await lorafleet(['keys', ...args]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(message);
  });

  it('makes real CURVE pairs: a worker and a coordinator keyed from the files talk', async () => {
    const out = join(dir!, 'pairs');
    await lorafleetOk(['keys', '--out', out, '--name', 'coordinator']);
    await lorafleetOk(['keys', '--out', out, '--name', 'w1']);
    const server = keyLines(join(out, 'coordinator.key'));
    const worker = keyLines(join(out, 'w1.key'));
    const router = new Router({
      curveServer: true,
      curveSecretKey: server['secret-key']!,
      receiveTimeout: 5000,
      linger: 0,
    });
    const dealer = new Dealer({
      curvePublicKey: worker['public-key']!,
      curveSecretKey: worker['secret-key']!,
      curveServerKey: keyLines(join(out, 'coordinator.pub'))['public-key']!,
      linger: 0,
    });
    try {
      await router.bind('tcp://127.0.0.1:*');
      dealer.connect(router.lastEndpoint!);
      await dealer.send('hello over CURVE');
      const [, body] = await router.receive();
      expect(body?.toString()).toBe('hello over CURVE');
    } finally {
      dealer.close();
      router.close();
    }
  });
});
