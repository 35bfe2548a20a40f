/**
 * Durations in config and input are written the way operators write them: "90s", "15m", "24h",
 * "30d", "2w", "7y". A year is 365 days: retention of "7y" keeps data 2,555 days.
 */
const UNIT_MS = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 7 * 86_400_000,
  y: 365 * 86_400_000,
} as const;

export type DurationUnit = keyof typeof UNIT_MS;
export const DURATION_UNITS = Object.keys(UNIT_MS) as DurationUnit[];

const DURATION_RE = /^(-?\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w|y)$/;

/** Parses "24h" into milliseconds; returns undefined when the text is not a duration. */
export function parseDuration(text: string): number | undefined {
  const match = DURATION_RE.exec(text.trim());
  if (!match) return undefined;
  const value = Number(match[1]);
  const unit = match[2] as DurationUnit;
  return value * UNIT_MS[unit];
}

/** The shortest exact way to write a duration: 86_400_000 → "1d". */
export function formatDuration(ms: number): string {
  const units: DurationUnit[] = ['y', 'w', 'd', 'h', 'm', 's'];
  for (const unit of units) {
    if (ms !== 0 && ms % UNIT_MS[unit] === 0) return `${ms / UNIT_MS[unit]}${unit}`;
  }
  return `${ms}ms`;
}
