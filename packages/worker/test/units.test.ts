// The worker's small pure pieces: the replica hash and the run config's codec.
import { describe, expect, it } from 'vitest';
import {
  RunConfigError,
  decodeRunConfig,
  encodeRunConfig,
  hashHex,
  replicaHash,
  runConfigHash,
} from '../src/index.js';
import { tinyRun } from './helpers.js';

describe('replicaHash', () => {
  const values = Float32Array.from({ length: 1001 }, (_, i) => Math.sin(i));

  it('is 8 bytes, the same for the same bits', () => {
    const hash = replicaHash(values);
    expect(hash).toHaveLength(8);
    expect(hashHex(replicaHash(values.slice()))).toBe(hashHex(hash));
    // A view into a larger buffer hashes its own elements only.
    const padded = new Float32Array(1003);
    padded.set(values, 1);
    expect(hashHex(replicaHash(padded.subarray(1, 1002)))).toBe(hashHex(hash));
  });

  it('changes with one flipped low bit, a swap, or the length', () => {
    const seen = new Set([hashHex(replicaHash(values))]);
    const flipped = values.slice();
    new Uint32Array(flipped.buffer)[500]! ^= 1;
    const swapped = values.slice();
    [swapped[3], swapped[4]] = [swapped[4]!, swapped[3]!];
    for (const v of [flipped, swapped, values.subarray(0, 1000), new Float32Array(1001)]) {
      seen.add(hashHex(replicaHash(v)));
    }
    expect(seen.size).toBe(5);
  });
});

describe('run config', () => {
  it('round-trips through JSON and its hash', async () => {
    const { config } = await tinyRun();
    const { runConfig, runConfigHash } = encodeRunConfig(config);
    expect(runConfigHash).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(decodeRunConfig(runConfig, runConfigHash)).toEqual(config);
  });

  it('refuses a config that does not match its hash, or a bad field, naming it', async () => {
    const { config } = await tinyRun();
    const good = encodeRunConfig(config);
    const tampered = good.runConfig.replace('"seed":3', '"seed":4');
    expect(() => decodeRunConfig(tampered, good.runConfigHash)).toThrow(/does not match its hash/);
    const bad = encodeRunConfig({ ...config, lora: { ...config.lora, r: 0 } });
    expect(() => decodeRunConfig(bad.runConfig, bad.runConfigHash)).toThrow(RunConfigError);
    expect(() => decodeRunConfig(bad.runConfig, bad.runConfigHash)).toThrow(
      'runConfig.lora.r must be an integer >= 1, got 0',
    );
    const noData = JSON.stringify({ ...config, dataFile: 7 });
    expect(() => decodeRunConfig(noData, runConfigHash(noData))).toThrow(
      'runConfig.dataFile must be a non-empty string, got 7',
    );
  });
});
