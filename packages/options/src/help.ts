// The --help text of a command, from its spec.
import { type CommandSpec, commandLine } from './spec.js';

export function helpText(spec: CommandSpec): string {
  const rows = Object.entries(spec.options).map(([name, o]) => {
    const flag = `${o.short ? `-${o.short}, ` : '    '}--${name}${o.kind === 'boolean' ? '' : ` ${o.value ?? o.kind.toUpperCase()}`}`;
    const extra = [
      o.choices ? `one of: ${o.choices.join(', ')}` : '',
      o.default !== undefined && o.kind !== 'boolean'
        ? `default: ${Array.isArray(o.default) ? o.default.join(',') : String(o.default)}`
        : '',
      o.env ? `env ${o.env}` : '',
      o.required ? 'required' : '',
    ].filter(Boolean);
    return [flag, `${o.description}${extra.length ? ` (${extra.join('; ')})` : ''}`] as const;
  });
  const width = Math.min(34, Math.max(...rows.map(([f]) => f.length)) + 2);
  const lines = rows.map(([f, d]) =>
    f.length + 2 > width ? `  ${f}\n  ${' '.repeat(width)}${d}` : `  ${f.padEnd(width)}${d}`,
  );
  return [
    `usage: ${commandLine(spec)} [options]`,
    '',
    spec.summary,
    '',
    'options:',
    ...lines,
    `  -h, --help${' '.repeat(Math.max(1, width - 10))}show this help`,
    ...(spec.details ? ['', spec.details] : []),
  ].join('\n');
}
