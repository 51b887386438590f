// Command-line options: one typed spec per command drives parsing, the
// --config file, validation with clear messages, and the --help text.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

export type OptionKind = 'string' | 'int' | 'number' | 'boolean' | 'list';

export interface OptionSpec {
  kind: OptionKind;
  description: string;
  /** Shown in help as --name VALUE. */
  value?: string;
  default?: string | number | boolean | string[];
  required?: boolean;
  choices?: readonly string[];
  min?: number;
  max?: number;
  short?: string;
}

export interface CommandSpec {
  name: string;
  summary: string;
  /** Extra help text after the option list (examples, notes). */
  details?: string;
  options: Record<string, OptionSpec>;
  /** Whether --config FILE may supply option values (JSON with the same names). */
  configFile?: boolean;
}

export class UsageError extends Error {
  override name = 'UsageError';
}

export type OptionValue = string | number | boolean | string[] | undefined;

/** Parsed and validated option values, keyed by option name. */
export class Options {
  constructor(
    private readonly command: string,
    private readonly values: Map<string, OptionValue>,
  ) {}

  has(name: string): boolean {
    return this.values.get(name) !== undefined;
  }
  string(name: string): string {
    return this.expect(name, 'string') as string;
  }
  optionalString(name: string): string | undefined {
    return this.values.get(name) as string | undefined;
  }
  number(name: string): number {
    return this.expect(name, 'number') as number;
  }
  optionalNumber(name: string): number | undefined {
    return this.values.get(name) as number | undefined;
  }
  boolean(name: string): boolean {
    return (this.values.get(name) as boolean | undefined) ?? false;
  }
  list(name: string): string[] {
    return (this.values.get(name) as string[] | undefined) ?? [];
  }
  /** A copy with some values replaced (a cluster launcher fills in --listen and --expect). */
  with(overrides: Record<string, OptionValue>): Options {
    return new Options(this.command, new Map([...this.values, ...Object.entries(overrides)]));
  }

  private expect(name: string, what: string): OptionValue {
    const v = this.values.get(name);
    if (v === undefined)
      throw new UsageError(`${this.command}: --${name} is required (a ${what}); see --help`);
    return v;
  }
}

function convert(
  command: string,
  name: string,
  spec: OptionSpec,
  raw: unknown,
  where: string,
): OptionValue {
  const bad = (expected: string): never => {
    throw new UsageError(
      `${command}: ${where}--${name} must be ${expected}, got ${JSON.stringify(raw)}`,
    );
  };
  let value: OptionValue;
  switch (spec.kind) {
    case 'boolean':
      if (typeof raw !== 'boolean') bad('true or false');
      value = raw as boolean;
      break;
    case 'string':
      if (typeof raw !== 'string' || raw === '') bad('a non-empty string');
      value = raw as string;
      break;
    case 'list': {
      const items = Array.isArray(raw)
        ? raw
        : typeof raw === 'string'
          ? raw.split(',')
          : bad('a comma-separated list');
      const list = (items as unknown[]).map((x) => String(x).trim()).filter((x) => x !== '');
      if (list.length === 0) bad('a non-empty comma-separated list');
      value = list;
      break;
    }
    case 'int':
    case 'number': {
      const n =
        typeof raw === 'number'
          ? raw
          : typeof raw === 'string' && raw.trim() !== ''
            ? Number(raw)
            : NaN;
      if (!Number.isFinite(n) || (spec.kind === 'int' && !Number.isInteger(n))) {
        bad(spec.kind === 'int' ? 'an integer' : 'a number');
      }
      if (spec.min !== undefined && n < spec.min) bad(`>= ${spec.min}`);
      if (spec.max !== undefined && n > spec.max) bad(`<= ${spec.max}`);
      value = n;
      break;
    }
  }
  if (spec.choices && typeof value === 'string' && !spec.choices.includes(value)) {
    bad(`one of ${spec.choices.join(', ')}`);
  }
  return value;
}

function readConfigFile(command: string, path: string, spec: CommandSpec): Record<string, unknown> {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new UsageError(`${command}: cannot read --config ${path}: ${(err as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new UsageError(
      `${command}: --config ${path} must hold a JSON object of option names to values`,
    );
  }
  for (const key of Object.keys(json)) {
    if (!(key in spec.options) || key === 'config') {
      throw new UsageError(
        `${command}: --config ${path}: unknown option "${key}" (see --help for the names)`,
      );
    }
  }
  return json as Record<string, unknown>;
}

/** Parses argv for a command: flags win over --config values, which win over defaults. */
export function parseCommand(spec: CommandSpec, argv: string[]): Options | 'help' {
  const parseOptions: Record<string, { type: 'string' | 'boolean'; short?: string }> = {
    help: { type: 'boolean', short: 'h' },
  };
  for (const [name, o] of Object.entries(spec.options)) {
    parseOptions[name] = {
      type: o.kind === 'boolean' ? 'boolean' : 'string',
      ...(o.short ? { short: o.short } : {}),
    };
    if (o.kind === 'boolean') parseOptions[`no-${name}`] = { type: 'boolean' };
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: argv,
      options: parseOptions,
      allowPositionals: false,
      strict: true,
    });
  } catch (err) {
    throw new UsageError(
      `${spec.name}: ${(err as Error).message.replace(/\n/g, ' ')}; see lorafleet ${spec.name} --help`,
    );
  }
  if (parsed.values.help) return 'help';
  const fromFile =
    spec.configFile && typeof parsed.values.config === 'string'
      ? readConfigFile(spec.name, parsed.values.config, spec)
      : {};
  const values = new Map<string, OptionValue>();
  for (const [name, o] of Object.entries(spec.options)) {
    let raw: unknown = parsed.values[name];
    let where = '';
    if (o.kind === 'boolean' && parsed.values[`no-${name}`]) raw = false;
    if (raw === undefined && name in fromFile) {
      raw = fromFile[name];
      where = `config file: `;
    }
    if (raw === undefined) raw = o.default;
    if (raw === undefined) {
      if (o.required)
        throw new UsageError(
          `${spec.name}: --${name} is required; see lorafleet ${spec.name} --help`,
        );
      continue;
    }
    values.set(name, convert(spec.name, name, o, raw, where));
  }
  return new Options(spec.name, values);
}

export function helpText(spec: CommandSpec): string {
  const rows = Object.entries(spec.options).map(([name, o]) => {
    const flag = `${o.short ? `-${o.short}, ` : '    '}--${name}${o.kind === 'boolean' ? '' : ` ${o.value ?? o.kind.toUpperCase()}`}`;
    const extra = [
      o.choices ? `one of: ${o.choices.join(', ')}` : '',
      o.default !== undefined && o.kind !== 'boolean'
        ? `default: ${Array.isArray(o.default) ? o.default.join(',') : o.default}`
        : '',
      o.required ? 'required' : '',
    ].filter(Boolean);
    return [flag, `${o.description}${extra.length ? ` (${extra.join('; ')})` : ''}`] as const;
  });
  const width = Math.min(34, Math.max(...rows.map(([f]) => f.length)) + 2);
  const lines = rows.map(([f, d]) =>
    f.length + 2 > width ? `  ${f}\n  ${' '.repeat(width)}${d}` : `  ${f.padEnd(width)}${d}`,
  );
  return [
    `usage: lorafleet ${spec.name} [options]`,
    '',
    spec.summary,
    '',
    'options:',
    ...lines,
    `  -h, --help${' '.repeat(Math.max(1, width - 10))}show this help`,
    ...(spec.details ? ['', spec.details] : []),
  ].join('\n');
}
