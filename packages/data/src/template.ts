// Prompt templates such as "{mr}\n": a column's value in braces, "{{" and "}}"
// for literal braces. A name that is not a column is an error, so typos fail
// at load time rather than training on "{mr }" forever.

const PART = /\{\{|\}\}|\{([^{}]*)\}|[{}]/g;

/** Literal text, or a field reference. */
type Part = string | { name: string };

function parseTemplate(template: string): Part[] {
  const parts: Part[] = [];
  let last = 0;
  for (const m of template.matchAll(PART)) {
    const at = m.index;
    if (m[0] === '{' || m[0] === '}') {
      throw new SyntaxError(
        `template ${JSON.stringify(template)} has an unmatched '${m[0]}' at ${at}; ` +
          `write '${m[0]}${m[0]}' for a literal brace`,
      );
    }
    parts.push(template.slice(last, at));
    parts.push(m[1] === undefined ? m[0][0]! : { name: m[1] });
    last = at + m[0].length;
  }
  parts.push(template.slice(last));
  return parts;
}

/** The names a template refers to, in order of first use. */
export function templateFields(template: string): string[] {
  const names = parseTemplate(template).flatMap((p) => (typeof p === 'string' ? [] : [p.name]));
  return [...new Set(names)];
}

/**
 * Compiles a template against a list of column names; the result renders a
 * row given as values in the same column order. Throws a RangeError naming
 * an unknown field and the columns present.
 */
export function compileTemplate(
  template: string,
  columns: readonly string[],
): (values: readonly string[]) => string {
  const parts = parseTemplate(template).map((p) => {
    if (typeof p === 'string') return p;
    const index = columns.indexOf(p.name);
    if (index < 0) {
      throw new RangeError(
        `template ${JSON.stringify(template)} uses {${p.name}}, which is not among: ` +
          columns.join(', '),
      );
    }
    return index;
  });
  return (values) => parts.map((p) => (typeof p === 'string' ? p : (values[p] ?? ''))).join('');
}

/** Fills a template from named values; throws if it names a key `values` lacks. */
export function renderTemplate(template: string, values: Readonly<Record<string, string>>): string {
  const names = Object.keys(values);
  return compileTemplate(template, names)(names.map((n) => values[n] as string));
}
