// Reading a decoded run config's JSON objects field by field: each value
// checked, a wrong one named by its path (runConfig.lora.r must be ...).

export class RunConfigError extends Error {
  override name = 'RunConfigError';
}

/** Typed reads from a parsed JSON object; errors name the field's path. */
export class Fields {
  readonly raw: Record<string, unknown>;
  constructor(
    value: unknown,
    private readonly path: string,
  ) {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new RunConfigError(`${path} must be an object`);
    }
    this.raw = value as Record<string, unknown>;
  }
  has(key: string): boolean {
    return this.raw[key] !== undefined && this.raw[key] !== null;
  }
  object(key: string): Fields {
    return new Fields(this.raw[key], `${this.path}.${key}`);
  }
  string(key: string): string {
    const v = this.raw[key];
    if (typeof v !== 'string' || v === '') this.bad(key, 'a non-empty string');
    return v as string;
  }
  strings(key: string): string[] {
    const v = this.raw[key];
    if (!Array.isArray(v) || v.length === 0 || v.some((s) => typeof s !== 'string' || s === ''))
      this.bad(key, 'a non-empty list of non-empty strings');
    return v as string[];
  }
  number(key: string): number {
    const v = this.raw[key];
    if (typeof v !== 'number' || !Number.isFinite(v)) this.bad(key, 'a finite number');
    return v as number;
  }
  /** A finite number that passes `ok`, described by `expected` ("> 0"). */
  numberIn(key: string, ok: (v: number) => boolean, expected: string): number {
    const v = this.number(key);
    if (!ok(v)) this.bad(key, `a number ${expected}`);
    return v;
  }
  int(key: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
    const v = this.number(key);
    if (!Number.isInteger(v) || v < min || v > max)
      this.bad(
        key,
        max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer in [${min}, ${max}]`,
      );
    return v;
  }
  boolean(key: string): boolean {
    const v = this.raw[key];
    if (typeof v !== 'boolean') this.bad(key, 'true or false');
    return v as boolean;
  }
  choice<T extends string>(key: string, choices: readonly T[]): T {
    const v = this.raw[key];
    if (!choices.includes(v as T)) this.bad(key, `one of ${choices.join(', ')}`);
    return v as T;
  }
  private bad(key: string, expected: string): never {
    throw new RunConfigError(
      `${this.path}.${key} must be ${expected}, got ${JSON.stringify(this.raw[key])}`,
    );
  }
}
