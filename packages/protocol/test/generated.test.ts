// proto/ is the single source of truth: the checked-in src/generated/ must be
// exactly what scripts/generate.sh makes from it today.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const pkg = join(import.meta.dirname, '..');
const checkedIn = join(pkg, 'src', 'generated');
const fresh = mkdtempSync(join(tmpdir(), 'lorafleet-generated-'));
afterAll(() => rmSync(fresh, { recursive: true, force: true }));

describe('generated code', () => {
  it('is up to date with proto/ (else run packages/protocol/scripts/generate.sh)', () => {
    execFileSync('bash', [join(pkg, 'scripts', 'generate.sh'), fresh], { stdio: 'pipe' });
    const files = readdirSync(fresh).sort();
    expect(readdirSync(checkedIn).sort()).toEqual(files);
    for (const file of files) {
      const stale =
        readFileSync(join(checkedIn, file), 'utf8') !== readFileSync(join(fresh, file), 'utf8');
      expect(
        stale,
        `src/generated/${file} is stale: run packages/protocol/scripts/generate.sh`,
      ).toBe(false);
    }
  });
});
