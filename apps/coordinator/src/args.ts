// Command-line options: @lorafleet/options derives each command's typed values
// from its spec (parsing, --config files, validation, --help).
export {
  type CommandSpec,
  type CommandValues,
  type OptionSpec,
  type OptionSpecs,
  type OptionValues,
  UsageError,
  camelCase,
  defineCommand,
  defineOptions,
  givenOptions,
  helpText,
  mathOptions,
  parseCommand,
  withValues,
} from '@lorafleet/options';
