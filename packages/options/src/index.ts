export {
  type CamelCase,
  type CommandSpec,
  type CommandValues,
  type OptionKind,
  type OptionSpec,
  type OptionSpecs,
  type OptionValues,
  UsageError,
  camelCase,
  commandLine,
  defineCommand,
  defineOptions,
  mathOptions,
} from './spec.js';
export { givenOptions, parseCommand, withValues } from './parse.js';
export { helpText } from './help.js';
