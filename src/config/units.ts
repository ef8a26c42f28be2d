// Parsing of human-written durations ("90s", "30d") and sizes ("50M", "1.5G") in the config.

const DURATION_UNITS_MS: Record<string, number> = {
  ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000,
};

/** Parses `123`, `90s`, `5m`, `30d`, `1h30m` into milliseconds; a bare number means seconds. */
export function parseDuration(input: string | number): number | null {
  if (typeof input === 'number') return Number.isFinite(input) && input >= 0 ? input * 1000 : null;
  const text = input.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text) * 1000;
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('').replace(/\s/g, '') !== text.replace(/\s/g, '')) return null;
  return parts.reduce((total, p) => total + Number(p[1]) * DURATION_UNITS_MS[p[2]!]!, 0);
}

const SIZE_UNITS: Record<string, number> = {
  '': 1, b: 1, k: 1024, kb: 1024, kib: 1024, m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2,
  g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3,
};

/** Parses `52428800`, `50M`, `50MB`, `1.5G` into bytes (binary units, as Synapse does). */
export function parseSize(input: string | number): number | null {
  if (typeof input === 'number') return Number.isFinite(input) && input >= 0 ? Math.floor(input) : null;
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(input.trim());
  if (!match) return null;
  const unit = SIZE_UNITS[match[2]!.toLowerCase()];
  return unit === undefined ? null : Math.floor(Number(match[1]) * unit);
}

export function formatDuration(ms: number): string {
  if (ms % 86_400_000 === 0 && ms >= 86_400_000) return `${ms / 86_400_000}d`;
  if (ms % 3_600_000 === 0 && ms >= 3_600_000) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0 && ms >= 60_000) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

/** A duration for people, rounded to its largest whole unit: "90d", "20h", "45m", "12s" (7775999 s → "90d"). */
export function roughDuration(ms: number): string {
  const units: [number, string][] = [[86_400_000, 'd'], [3_600_000, 'h'], [60_000, 'm'], [1000, 's']];
  for (const [size, unit] of units) {
    if (Math.abs(ms) >= size) return `${Math.round(ms / size)}${unit}`;
  }
  return `${Math.round(ms)}ms`;
}
