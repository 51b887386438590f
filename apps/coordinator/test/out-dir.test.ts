// checkOutDir on real folders, files and symlinks: an output folder that is
// (or is inside) an input, a file, or an earlier result is refused by flag
// and path before any work starts.
import { mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UsageError } from '../src/args.js';
import { checkOutDir, describeFsError } from '../src/out-dir.js';
import { makeTempDir, removeDir } from './helpers.js';

let dir: string;
let model: string;

beforeAll(async () => {
  dir = await makeTempDir('out-dir');
  model = join(dir, 'model');
  await mkdir(model);
  await writeFile(join(model, 'model.safetensors'), 'weights');
});

afterAll(() => removeDir(dir));

const modelInput = () => ({ flag: '--model', path: model, holds: 'the base weights' });

describe('checkOutDir', () => {
  it('accepts a new folder (and its missing parents) and an empty one', async () => {
    await expect(
      checkOutDir(join(dir, 'a', 'b', 'c'), { flag: '--out', mustBeEmpty: true }),
    ).resolves.toBe(join(dir, 'a', 'b', 'c'));
    await mkdir(join(dir, 'empty'));
    await expect(
      checkOutDir(join(dir, 'empty'), { flag: '--out', mustBeEmpty: true }),
    ).resolves.toBe(join(dir, 'empty'));
  });

  it('refuses a folder holding an earlier result, naming its files and the way out', async () => {
    const err = await checkOutDir(model, {
      flag: '--out',
      mustBeEmpty: true,
      overwriteHint: 'pass --overwrite',
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toBe(
      `--out ${model} already holds an earlier result (model.safetensors); choose a new or empty folder, or pass --overwrite`,
    );
    await expect(checkOutDir(model, { flag: '--out', mustBeEmpty: false })).resolves.toBe(model);
  });

  it('refuses the input folder itself, a folder inside it, and a symlink to it', async () => {
    const rules = { flag: '--out', mustBeEmpty: false, inputs: [modelInput()] };
    await expect(checkOutDir(model, rules)).rejects.toThrow(
      `--out ${model} is the same folder as --model ${model}: writing there would overwrite the base weights`,
    );
    await expect(checkOutDir(`${model}/./`, rules)).rejects.toThrow('the same folder as --model');
    await expect(checkOutDir(join(model, 'merged'), rules)).rejects.toThrow(
      `--out ${join(model, 'merged')} is inside --model ${model}`,
    );
    const link = join(dir, 'link-to-model');
    await symlink(model, link);
    await expect(checkOutDir(link, rules)).rejects.toThrow(
      `--out ${link} is the same folder as --model ${model} (both are ${model})`,
    );
    await expect(checkOutDir(join(dir, 'elsewhere'), rules)).resolves.toBe(join(dir, 'elsewhere'));
  });

  it('refuses a file where the folder or one of its parents belongs', async () => {
    const file = join(dir, 'a-file');
    await writeFile(file, 'x');
    await expect(checkOutDir(file, { flag: '--out', mustBeEmpty: false })).rejects.toThrow(
      `--out ${file} is a file, not a folder`,
    );
    await expect(
      checkOutDir(join(file, 'sub'), { flag: '--out', mustBeEmpty: false }),
    ).rejects.toThrow(`--out ${join(file, 'sub')} cannot be created: ${file} is a file`);
    await rm(file);
  });
});

describe('describeFsError', () => {
  it('turns EACCES, EISDIR, EEXIST into words with the path, keeping the code', () => {
    const err = Object.assign(new Error('EACCES: permission denied, open'), {
      code: 'EACCES',
      path: '/x/y/config.json',
    });
    expect(describeFsError(err, 'cannot write the merged model to', '/x/y').message).toBe(
      'cannot write the merged model to /x/y: permission denied (at /x/y/config.json) (EACCES)',
    );
    const isDir = Object.assign(new Error('EISDIR'), { code: 'EISDIR', path: '/x/f' });
    expect(describeFsError(isDir, 'cannot write', '/x/f').message).toBe(
      'cannot write /x/f: it is a folder, where a file was expected (EISDIR)',
    );
    const other = new Error('something else');
    expect(describeFsError(other, 'cannot write', '/x')).toBe(other);
  });
});
