// eval and merge refuse what they cannot vouch for, with real processes and
// files: a NaN adapter (what a diverged run leaves) fails eval and merge with
// exit 1 and writes nothing; merge's logit check fails above its tolerance
// and --no-check skips it; --out on the base model (or a symlink to it, or an
// earlier result) is refused before anything loads.
import { existsSync } from 'node:fs';
import { cp, readFile, readdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  SEQ_LEN,
  ensureBuilt,
  initTinyModel,
  lorafleet,
  lorafleetOk,
  makeTempDir,
  patternRecords,
  removeDir,
  writeJsonl,
} from './helpers.js';

let dir: string | undefined;
let base: string;
let data: string;
let adapter: string;
let nanAdapter: string;

/** A copy of an adapter folder whose F32 weights are all NaN. */
async function poisonAdapter(from: string, to: string): Promise<void> {
  await cp(from, to, { recursive: true });
  const path = join(to, 'adapter_model.safetensors');
  const bytes = await readFile(path);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8')) as Record<
    string,
    { dtype: string; data_offsets: [number, number] }
  >;
  const start = 8 + headerLength;
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__' || t.dtype !== 'F32') continue;
    for (let at = start + t.data_offsets[0]; at < start + t.data_offsets[1]; at += 4) {
      bytes.writeFloatLE(NaN, at);
    }
  }
  await writeFile(path, bytes);
}

beforeAll(async () => {
  await ensureBuilt();
  dir = await makeTempDir('checks');
  base = await initTinyModel(dir, 'base');
  data = await writeJsonl(join(dir, 'train.jsonl'), patternRecords(20));
  const run = join(dir, 'run');
  await lorafleetOk([
    'train',
    ...['--model', base, '--data', data, '--out', run],
    ...['--steps', '3', '--lr', '1e-2', '--seq-len', SEQ_LEN],
  ]);
  adapter = join(run, 'adapter');
  nanAdapter = join(dir, 'nan-adapter');
  await poisonAdapter(adapter, nanAdapter);
}, 300_000);

afterAll(() => removeDir(dir));

describe.concurrent('non-finite results are failures', () => {
  it('eval with a NaN adapter exits 1 and says the loss is not finite', async () => {
    const args = ['eval', '--model', base, '--data', data, '--seq-len', SEQ_LEN];
    const result = await lorafleet([...args, '--adapter', nanAdapter]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`lorafleet eval: the loss on ${data} is NaN`);
    expect(result.stderr).toContain(`with the adapter ${nanAdapter}`);
    expect(result.stdout).toBe('');
    const json = await lorafleet([...args, '--adapter', nanAdapter, '--json']);
    expect(json.code).toBe(1);
    expect((await lorafleet([...args, '--adapter', adapter])).code).toBe(0);
  });

  it('merge of a NaN adapter exits 1 and writes no model', async () => {
    const out = join(dir!, 'merged-nan');
    const result = await lorafleet([
      'merge',
      ...['--model', base, '--adapter', nanAdapter, '--out', out],
    ]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/lorafleet merge: the merged weight \S+ holds NaN/);
    expect(result.stderr).toContain('nothing was written');
    expect(existsSync(out)).toBe(false);
  });
});

describe.concurrent('the merge check', () => {
  it('passes within the default tolerance, fails at --tolerance 0, and --no-check skips it', async () => {
    const merge = (out: string, ...more: string[]) =>
      lorafleet([
        'merge',
        '--model',
        base,
        '--adapter',
        adapter,
        '--out',
        join(dir!, out),
        ...more,
      ]);
    const ok = await merge('merged-ok');
    expect(ok.code, ok.stderr).toBe(0);
    const gap = Number(/differ by at most (\S+) from/.exec(ok.stdout)?.[1]);
    // The tiny run's float32 round-off: above 0, so --tolerance 0 must fail.
    expect(gap).toBeGreaterThan(0);
    expect(gap).toBeLessThan(1e-4);
    const strict = await merge('merged-strict', '--tolerance', '0');
    expect(strict.code).toBe(1);
    expect(strict.stderr).toContain('the merge check failed: merged and unmerged logits differ by');
    expect(existsSync(join(dir!, 'merged-strict'))).toBe(false);
    const unchecked = await merge('merged-unchecked', '--tolerance', '0', '--no-check');
    expect(unchecked.code, unchecked.stderr).toBe(0);
    expect(unchecked.stdout).toContain('not checked (--no-check)');
  });

  it('--help states the tolerance and --no-check', async () => {
    const { stdout } = await lorafleetOk(['merge', '--help']);
    expect(stdout).toContain('--tolerance');
    expect(stdout).toContain('default: 0.001');
    expect(stdout).toContain('--no-check skips');
  });
});

describe.concurrent('merge --out', () => {
  const mergeInto = (out: string, ...more: string[]) =>
    lorafleet(['merge', '--model', base, '--adapter', adapter, '--out', out, ...more]);

  it('refuses --model itself, a symlink to it and a folder inside it, leaving the weights untouched', async () => {
    const before = await readFile(join(base, 'model.safetensors'));
    const same = await mergeInto(base, '--overwrite');
    expect(same.code).toBe(2);
    expect(same.stderr).toContain(
      `lorafleet merge: --out ${base} is the same folder as --model ${base}: writing there would overwrite the base weights`,
    );
    const link = join(dir!, 'base-link');
    await symlink(base, link);
    const viaLink = await mergeInto(link, '--overwrite');
    expect(viaLink.code).toBe(2);
    expect(viaLink.stderr).toContain(`(both are ${base})`);
    const inside = await mergeInto(join(base, 'merged'));
    expect(inside.code).toBe(2);
    expect(inside.stderr).toContain(`is inside --model ${base}`);
    expect(await readFile(join(base, 'model.safetensors'))).toEqual(before);
    expect(await readdir(base)).not.toContain('merged');
  });

  it('refuses an earlier result unless --overwrite, and a file where the folder belongs', async () => {
    const earlier = join(dir!, 'earlier');
    expect((await mergeInto(earlier)).code).toBe(0);
    const again = await mergeInto(earlier);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain(`--out ${earlier} already holds an earlier result (`);
    expect(again.stderr).toContain('pass --overwrite');
    expect((await mergeInto(earlier, '--overwrite')).code).toBe(0);
    const file = join(dir!, 'a-file');
    await writeFile(file, 'x');
    const onFile = await mergeInto(file);
    expect(onFile.code).toBe(2);
    expect(onFile.stderr).toContain(`--out ${file} is a file, not a folder`);
    expect(onFile.stderr).not.toMatch(/EEXIST|ENOTDIR|EISDIR/);
  });
});
