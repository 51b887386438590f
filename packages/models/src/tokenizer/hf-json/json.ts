/** Small readers for tokenizer.json fields, with errors that say where (e.g. "pre_tokenizer.pretokenizers[0]"). */

export type JsonObject = Record<string, unknown>;

/** A refusal or malformed field in tokenizer.json; `where` is the JSON path. */
export class TokenizerJsonError extends Error {
  constructor(file: string, where: string, message: string) {
    super(`${file}: ${where}: ${message}`);
    this.name = 'TokenizerJsonError';
  }
}

/** Where errors point: the file and a JSON path inside it. */
export interface JsonPlace {
  file: string;
  path: string;
}

export function at(place: JsonPlace, key: string | number): JsonPlace {
  return {
    file: place.file,
    path: typeof key === 'number' ? `${place.path}[${key}]` : `${place.path}.${key}`,
  };
}

export function fail(place: JsonPlace, message: string): never {
  throw new TokenizerJsonError(place.file, place.path, message);
}

export function asObject(value: unknown, place: JsonPlace): JsonObject {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    fail(place, `expected an object, found ${JSON.stringify(value)?.slice(0, 80)}`);
  }
  return value as JsonObject;
}

export function asArray(value: unknown, place: JsonPlace): unknown[] {
  if (!Array.isArray(value)) fail(place, `expected an array, found ${typeof value}`);
  return value;
}

export function asString(value: unknown, place: JsonPlace): string {
  if (typeof value !== 'string') fail(place, `expected a string, found ${JSON.stringify(value)}`);
  return value;
}

export function optionalBoolean(value: unknown, place: JsonPlace, fallback: boolean): boolean {
  if (value === undefined || value === null) return fallback;
  if (typeof value !== 'boolean')
    fail(place, `expected true or false, found ${JSON.stringify(value)}`);
  return value;
}

/** The component's "type", checked against the kinds this loader implements. */
export function componentType<K extends string>(
  value: JsonObject,
  place: JsonPlace,
  known: Readonly<Record<K, unknown>>,
  what: string,
): K {
  const type = value['type'];
  if (typeof type !== 'string' || !(type in known)) {
    fail(
      place,
      `${what} ${JSON.stringify(type)} is not supported (supported: ${Object.keys(known).join(', ')}); ` +
        'see docs/tokenizers.md for the formats lorafleet reads',
    );
  }
  return type as K;
}

/**
 * A `{"String": s}` or `{"Regex": r}` pattern (Split, Replace) as a global
 * JavaScript RegExp. Strings match literally.
 */
export function patternRegExp(
  value: unknown,
  place: JsonPlace,
  translate: (onig: string) => string,
): RegExp {
  const pattern = asObject(value, place);
  if (typeof pattern['String'] === 'string') {
    return new RegExp(pattern['String'].replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&'), 'gu');
  }
  if (typeof pattern['Regex'] === 'string') {
    const source = translate(pattern['Regex']);
    try {
      return new RegExp(source, 'gu');
    } catch (err) {
      fail(
        at(place, 'Regex'),
        `cannot compile ${JSON.stringify(pattern['Regex'])} as a JavaScript regular expression (${(err as Error).message})`,
      );
    }
  }
  fail(place, `expected {"String": ...} or {"Regex": ...}, found ${JSON.stringify(pattern)}`);
}
