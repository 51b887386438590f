// From argv (and an optional --config JSON file) to typed option values:
// flags win over --config values, which win over defaults. Every bad value is
// refused with the option's name, what it must be, and where it came from.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import {
  type CommandSpec,
  type OptionSpec,
  type OptionSpecs,
  type OptionValues,
  UsageError,
  camelCase,
  commandLine,
} from './spec.js';
import { suggestOption } from './suggest.js';

type Value = string | number | boolean | string[];

const GIVEN = Symbol('given');

/** Which options the user set (flag or --config), by spec name, as opposed to defaults. */
export function givenOptions(values: object): ReadonlySet<string> {
  return (values as { [GIVEN]?: ReadonlySet<string> })[GIVEN] ?? new Set();
}

/**
 * `values` with `changes`: a copy that still knows which options were given
 * (givenOptions), which a spread copy forgets (the record is not enumerable).
 */
export function withValues<T extends object>(values: T, changes: Partial<T>): T {
  const copy = { ...values, ...changes };
  Object.defineProperty(copy, GIVEN, { value: givenOptions(values), enumerable: false });
  return copy;
}

function convert(
  command: string,
  name: string,
  spec: OptionSpec,
  raw: unknown,
  where: string,
): Value {
  const bad = (expected: string): never => {
    throw new UsageError(
      `${command}: ${where}--${name} must be ${expected}, got ${JSON.stringify(raw)}`,
    );
  };
  let value: Value;
  switch (spec.kind) {
    case 'boolean':
      value = typeof raw === 'boolean' ? raw : bad('true or false');
      break;
    case 'string':
      value = typeof raw === 'string' && raw !== '' ? raw : bad('a non-empty string');
      break;
    case 'list': {
      const items = Array.isArray(raw)
        ? raw
        : typeof raw === 'string'
          ? raw.split(',')
          : bad('a comma-separated list');
      const list = (items as unknown[]).map((x) => String(x).trim()).filter((x) => x !== '');
      value = list.length > 0 ? list : bad('a non-empty comma-separated list');
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

function readConfigFile(spec: CommandSpec, path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`${spec.name}: cannot read --config ${path}: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new UsageError(
      `${spec.name}: --config ${path} is not JSON (${(err as Error).message}); ` +
        'it takes a JSON object of option names to values, e.g. {"steps": 200, "lr": 1e-3}',
    );
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new UsageError(
      `${spec.name}: --config ${path} must hold a JSON object of option names to values`,
    );
  }
  for (const key of Object.keys(json)) {
    if (!(key in spec.options) || key === 'config') {
      const hint = suggestOption(spec, key, (name) => JSON.stringify(name));
      throw new UsageError(
        `${spec.name}: --config ${path}: unknown option "${key}"${hint ? `; ${hint}` : ''} ` +
          `(see ${commandLine(spec)} --help for the names)`,
      );
    }
  }
  return json as Record<string, unknown>;
}

/**
 * `--lr -1` reads as a flag `-1` to parseArgs; a negative number right after
 * an option that takes a number is its value, so it becomes `--lr=-1`.
 */
function joinNegativeNumbers(spec: CommandSpec, argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const next = argv[i + 1];
    const kind = arg.startsWith('--') ? spec.options[arg.slice(2)]?.kind : undefined;
    if ((kind === 'int' || kind === 'number') && next !== undefined && /^-(\d|\.\d)/.test(next)) {
      out.push(`${arg}=${next}`);
      i++;
    } else out.push(arg);
  }
  return out;
}

function readArgv(spec: CommandSpec, argv: readonly string[]) {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = {
    help: { type: 'boolean', short: 'h' },
  };
  for (const [name, o] of Object.entries(spec.options)) {
    options[name] = {
      type: o.kind === 'boolean' ? 'boolean' : 'string',
      ...(o.short ? { short: o.short } : {}),
    };
    if (o.kind === 'boolean' && !name.startsWith('no-'))
      options[`no-${name}`] = { type: 'boolean' };
  }
  try {
    return parseArgs({
      args: joinNegativeNumbers(spec, argv),
      options,
      allowPositionals: false,
      strict: true,
    }).values;
  } catch (err) {
    const message = (err as Error).message.replace(/\n/g, ' ');
    const unknown = /^Unknown option '(--[^'=]+)'/.exec(message)?.[1];
    const hint = unknown ? suggestOption(spec, unknown, (name) => `--${name}`) : '';
    throw new UsageError(
      `${spec.name}: ${message}${hint ? `; ${hint}` : ''}; see ${commandLine(spec)} --help`,
    );
  }
}

/** Parses argv for a command into its typed values, or 'help' for --help. */
export function parseCommand<O extends OptionSpecs>(
  spec: CommandSpec<O>,
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>> = process.env,
): OptionValues<O> | 'help' {
  const flags = readArgv(spec, argv);
  if (flags.help) return 'help';
  const fromFile =
    spec.configFile && typeof flags.config === 'string' ? readConfigFile(spec, flags.config) : {};
  const values: Record<string | symbol, unknown> = {};
  const given = new Set<string>();
  for (const [name, o] of Object.entries(spec.options)) {
    let raw: unknown = flags[name];
    let where = '';
    if (o.kind === 'boolean' && flags[`no-${name}`]) raw = false;
    if (raw === undefined && name in fromFile) {
      raw = fromFile[name];
      where = `--config ${flags.config as string}: `;
    }
    if (raw === undefined && o.env !== undefined && env[o.env]) {
      const text = env[o.env]!;
      raw = o.kind === 'boolean' ? text === '1' || text === 'true' : text;
      where = `${o.env}: `;
    }
    if (raw !== undefined) given.add(name);
    raw ??= o.kind === 'boolean' ? (o.default ?? false) : o.default;
    if (raw === undefined && o.required) {
      throw new UsageError(
        `${spec.name}: --${name} is required; see lorafleet ${spec.name} --help`,
      );
    }
    values[camelCase(name)] =
      raw === undefined ? undefined : convert(spec.name, name, o, raw, where);
  }
  Object.defineProperty(values, GIVEN, { value: given, enumerable: false });
  return values as OptionValues<O>;
}
