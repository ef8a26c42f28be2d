// A small typed reader over the parsed YAML: each call reads one key, checks its type,
// applies the default, and records a precise error (key path + what is expected) when the
// value is wrong. Unknown keys are reported by finish(). Errors are collected, not thrown,
// so an admin sees every mistake in one run; warnings (valid, but probably not meant) are
// collected beside them. Text keys take text only: a YAML number or date where text is
// expected is refused (quote it), so `server_name: 12345` is never read as "12345".

export interface ConfigProblem {
  /** Dotted key path, e.g. `acme.url`. */
  key: string;
  message: string;
}

type Plain = Record<string, unknown>;

export function isPlainObject(value: unknown): value is Plain {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value instanceof Date) return `a date (${value.toISOString().slice(0, 10)})`;
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return `the text ${JSON.stringify(value)}`;
  return `${typeof value} ${String(value)}`;
}

export class ObjectReader {
  private readonly seen = new Set<string>();

  constructor(
    private readonly data: Plain,
    private readonly prefix: string,
    readonly problems: ConfigProblem[],
    /** Valid but probably not what the admin meant: shown by check-config and logged by run. */
    readonly warnings: ConfigProblem[] = [],
  ) {}

  path(key: string): string {
    return this.prefix ? `${this.prefix}.${key}` : key;
  }

  has(key: string): boolean {
    return this.data[key] !== undefined && this.data[key] !== null;
  }

  problem(key: string, message: string): void {
    this.problems.push({ key: this.path(key), message });
  }

  warn(key: string, message: string): void {
    this.warnings.push({ key: this.path(key), message });
  }

  raw(key: string): unknown {
    this.seen.add(key);
    return this.data[key];
  }

  string(key: string, fallback: string): string;
  string(key: string, fallback: null): string | null;
  string(key: string, fallback: string | null): string | null {
    const value = this.raw(key);
    if (value === undefined || value === null) return fallback;
    if (typeof value !== 'string') {
      this.problem(key, `expected a text value, got ${describe(value)}${quoteHint(value)}`);
      return fallback;
    }
    return value;
  }

  requiredString(key: string, hint: string): string {
    const value = this.string(key, null);
    if (value === null || value.trim() === '') {
      if (!this.problems.some((p) => p.key === this.path(key))) {
        this.problem(key, `is required: ${hint}`);
      }
      return '';
    }
    return value;
  }

  boolean(key: string, fallback: boolean): boolean {
    const value = this.raw(key);
    if (value === undefined || value === null) return fallback;
    if (typeof value !== 'boolean') {
      this.problem(key, `expected true or false, got ${describe(value)}`);
      return fallback;
    }
    return value;
  }

  integer(key: string, fallback: number, min: number, max: number): number {
    const value = this.raw(key);
    if (value === undefined || value === null) return fallback;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      this.problem(key, `expected a whole number from ${min} to ${max}, got ${describe(value)}`);
      return fallback;
    }
    return value;
  }

  oneOf<T extends string>(key: string, choices: readonly T[], fallback: T): T {
    const value = this.raw(key);
    if (value === undefined || value === null) return fallback;
    if (typeof value !== 'string' || !choices.includes(value as T)) {
      this.problem(key, `expected one of ${choices.join(', ')}, got ${describe(value)}`);
      return fallback;
    }
    return value as T;
  }

  /**
   * A list of strings; a single string is accepted as a one-element list. `numbers`: whole
   * numbers are accepted too (listen lists, where a bare port is meant).
   */
  stringList(key: string, fallback: string[], options: { numbers?: boolean } = {}): string[] {
    const value = this.raw(key);
    if (value === undefined || value === null) return fallback;
    const accepted = (item: unknown): boolean => typeof item === 'string' || (options.numbers === true && typeof item === 'number' && Number.isInteger(item));
    const list = accepted(value) ? [value] : value;
    if (!Array.isArray(list)) {
      this.problem(key, `expected a list of text values, got ${describe(value)}${quoteHint(value)}`);
      return fallback;
    }
    const wrong = list.find((item) => !accepted(item));
    if (wrong !== undefined) {
      this.problem(key, `expected a list of text values, but it holds ${describe(wrong)}${quoteHint(wrong)}`);
      return fallback;
    }
    return list.map(String);
  }

  /** A nested mapping; absent → an empty reader, so its defaults apply. */
  object(key: string): ObjectReader {
    const value = this.raw(key);
    if (value === undefined || value === null) return new ObjectReader({}, this.path(key), this.problems, this.warnings);
    if (!isPlainObject(value)) {
      this.problem(key, `expected a mapping (indented keys), got ${describe(value)}`);
      return new ObjectReader({}, this.path(key), this.problems, this.warnings);
    }
    return new ObjectReader(value, this.path(key), this.problems, this.warnings);
  }

  /** A list of mappings, each read by `readItem`. */
  objectList<T>(key: string, readItem: (item: ObjectReader, index: number) => T): T[] {
    const value = this.raw(key);
    if (value === undefined || value === null) return [];
    if (!Array.isArray(value)) {
      this.problem(key, `expected a list of mappings, got ${describe(value)}`);
      return [];
    }
    return value.flatMap((item, index) => {
      const itemPath = `${this.path(key)}[${index}]`;
      if (!isPlainObject(item)) {
        this.problems.push({ key: itemPath, message: `expected a mapping, got ${describe(item)}` });
        return [];
      }
      const reader = new ObjectReader(item, itemPath, this.problems, this.warnings);
      const result = readItem(reader, index);
      reader.finish();
      return [result];
    });
  }

  /** Reports every key that no read asked for: typos (with the nearest real key) and keys from other tools. */
  finish(knownElsewhere: Record<string, string> = {}): void {
    for (const key of Object.keys(this.data)) {
      if (this.seen.has(key)) continue;
      const hint = knownElsewhere[key];
      if (hint) {
        this.problem(key, hint);
        continue;
      }
      const nearest = nearestKey(key, [...this.seen]);
      this.problem(key, nearest
        ? `is not a fedtls setting; did you mean ${this.path(nearest)}?`
        : 'is not a fedtls setting (check the spelling; config/fedtls.example.yaml lists every key)');
    }
  }
}

/** For a number, boolean or date where text is expected: how to write it as text. */
function quoteHint(value: unknown): string {
  if (typeof value === 'number' || typeof value === 'boolean') return `; put it in quotes ("${String(value)}") if you mean that text`;
  if (value instanceof Date) return '; put it in quotes if you mean that text';
  return '';
}

/** Edit distance between two short strings (Levenshtein). */
function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i += 1) {
    let diagonal = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j += 1) {
      const above = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length]!;
}

/** The known word closest to a misspelt one, when it is close enough to be a typo (config keys, CLI commands). */
export function nearestKey(key: string, known: string[]): string | null {
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const distance = editDistance(key.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best !== null && bestDistance <= (key.length <= 4 ? 1 : 2) ? best : null;
}
