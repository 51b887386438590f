// A full disk as the coordinator hears of it (a storage error, not a crash),
// and the LORAFLEET_FAULT_PAUSE test hook's parsing.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { pausesOf } from '../src/fault-injection.js';
import { StorageError, asStorageError, errorCodeOf } from '../src/index.js';

describe('asStorageError', () => {
  it('names the path and what the errno means; the wire code is storage', () => {
    const enospc = Object.assign(new Error('ENOSPC: no space left on device, write'), {
      code: 'ENOSPC',
    });
    const error = asStorageError(enospc, '/runs/a/checkpoints/.tmp-step-000004');
    expect(error).toBeInstanceOf(StorageError);
    expect((error as Error).message).toBe(
      'cannot write /runs/a/checkpoints/.tmp-step-000004: ENOSPC: no space left on device, write (the disk is full)',
    );
    expect(errorCodeOf(error)).toBe('storage');
  });

  it('leaves a real write that failed for another reason (ENOTDIR) an internal error', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lorafleet-storage-'));
    try {
      await writeFile(join(dir, 'file'), '');
      const real = await writeFile(join(dir, 'file', 'x'), 'y').catch((e: unknown) => e);
      // A wrong path is not a refusing disk: a replacement worker may do better.
      expect(asStorageError(real, dir)).toBe(real);
      expect(errorCodeOf(real)).toBe('internal');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('leaves other errors alone', () => {
    const other = new Error('boom');
    expect(asStorageError(other, '/x')).toBe(other);
  });
});

describe('LORAFLEET_FAULT_PAUSE', () => {
  it('reads MOMENT:MS pairs', () => {
    expect(pausesOf({ LORAFLEET_FAULT_PAUSE: 'eval:1500, checkpoint:0,state:20' })).toEqual({
      eval: 1500,
      checkpoint: 0,
      state: 20,
    });
    expect(pausesOf({})).toEqual({});
  });

  it('refuses an unknown moment or a bad number, naming the entry', () => {
    expect(() => pausesOf({ LORAFLEET_FAULT_PAUSE: 'eval:10,commit:5' })).toThrow(
      /"commit:5" is not MOMENT:MS with MOMENT one of eval, checkpoint, state, regroup/,
    );
    expect(() => pausesOf({ LORAFLEET_FAULT_PAUSE: 'eval:-1' })).toThrow(/"eval:-1"/);
  });
});
