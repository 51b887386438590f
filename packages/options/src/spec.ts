// One typed spec per command. The compiler derives the parsed values' type
// from the spec itself: `--lora-r` (kind int, a default) becomes
// `values.loraR: number`, `--resume` (kind string, no default) becomes
// `values.resume: string | undefined`, a string with `choices` becomes their
// union. A typo in an option name is a compile error, not a silent undefined.

export type OptionKind = 'string' | 'int' | 'number' | 'boolean' | 'list';

export interface OptionSpec {
  readonly kind: OptionKind;
  readonly description: string;
  /** Shown in help as --name VALUE. */
  readonly value?: string;
  readonly default?: string | number | boolean | readonly string[];
  readonly required?: boolean;
  readonly choices?: readonly string[];
  readonly min?: number;
  readonly max?: number;
  readonly short?: string;
  /**
   * Other tools' names for this setting (transformers' learning_rate, PEFT's
   * target_modules), named in the error for an unknown option or --config
   * key: `--learning-rate` gets "did you mean --lr?". Only suggested, never
   * accepted. Names that differ from this option's only by _ for - need none.
   */
  readonly aliases?: readonly string[];
  /** An environment variable that gives the value when the flag is absent (flags win). */
  readonly env?: string;
  /**
   * 'math': the value changes the numbers a run produces. A resumed run must
   * give the same value as its checkpoint (the list is read from the spec).
   */
  readonly affects?: 'math';
}

export type OptionSpecs = Readonly<Record<string, OptionSpec>>;

export interface CommandSpec<O extends OptionSpecs = OptionSpecs> {
  readonly name: string;
  /** How the command is typed, for --help and error hints (default: `lorafleet NAME`). */
  readonly usage?: string;
  readonly summary: string;
  /** Extra help text after the option list (examples, notes). */
  readonly details?: string;
  readonly options: O;
  /** Whether --config FILE may supply option values (JSON with the same names). */
  readonly configFile?: boolean;
}

/** 'lora-r' -> 'loraR' */
export type CamelCase<S extends string> = S extends `${infer Head}-${infer Tail}`
  ? `${Head}${Capitalize<CamelCase<Tail>>}`
  : S;

type ValueOf<S extends OptionSpec> = S['kind'] extends 'boolean'
  ? boolean
  : S['kind'] extends 'int' | 'number'
    ? number
    : S['kind'] extends 'list'
      ? string[]
      : S extends { readonly choices: readonly (infer C)[] }
        ? C
        : string;

/** Present after parsing: booleans, options with a default, required options. */
type AlwaysSet<S extends OptionSpec> = S['kind'] extends 'boolean'
  ? true
  : S extends { readonly default: unknown }
    ? true
    : S extends { readonly required: true }
      ? true
      : false;

/** The parsed values of a command's options, camel-cased and typed from its spec. */
export type OptionValues<O extends OptionSpecs> = {
  readonly [K in keyof O as CamelCase<K & string>]: AlwaysSet<O[K]> extends true
    ? ValueOf<O[K]>
    : ValueOf<O[K]> | undefined;
};

/** Declares a command keeping its options' literal types (kinds, choices, defaults). */
export function defineCommand<const O extends OptionSpecs>(spec: CommandSpec<O>): CommandSpec<O> {
  return spec;
}

/** Declares a group of options shared by several commands, keeping literal types. */
export function defineOptions<const O extends OptionSpecs>(options: O): O {
  return options;
}

export function camelCase(name: string): string {
  return name.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** The spec names of the options marked `affects: 'math'`. */
export function mathOptions(spec: CommandSpec): string[] {
  return Object.entries(spec.options)
    .filter(([, o]) => o.affects === 'math')
    .map(([name]) => name);
}

export class UsageError extends Error {
  override name = 'UsageError';
}

/** The typed values of a command: `CommandValues<typeof trainSpec>`. */
export type CommandValues<C extends CommandSpec<OptionSpecs>> = OptionValues<C['options']>;

/** How a command is typed: its `usage`, or `lorafleet NAME`. */
export function commandLine(spec: Pick<CommandSpec, 'name' | 'usage'>): string {
  return spec.usage ?? `lorafleet ${spec.name}`;
}
