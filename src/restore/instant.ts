/**
 * Instants at microsecond precision. Event timestamps are DuckDB TIMESTAMPs (µs), but a JS Date
 * keeps milliseconds only: comparing a point in time with event times through Date would round
 * away the last three digits and restore a write too many or too few. Pure: workflow code imports it.
 */

export interface Instant {
  /** Microseconds since 1970-01-01T00:00:00Z; a safe integer. */
  micros: number;
  /** The same instant in UTC with six fractional digits: 2026-06-01T10:00:00.123456Z. */
  iso: string;
}

// ISO-8601 date and time with a timezone (Z, ±hh:mm or ±hhmm); seconds and fraction optional.
const ISO_RE = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|([+-])(\d{2}):?(\d{2}))$/i;

/**
 * Parses an ISO-8601 time that names its timezone; undefined for anything else (no timezone,
 * impossible dates such as Feb 30, hour 24, leap second 60). Digits past the microsecond are
 * dropped (rounded down), which keeps "ts ≤ pointInTime" exact for µs timestamps.
 */
export function parseInstant(text: string): Instant | undefined {
  const m = ISO_RE.exec(text);
  if (!m) return undefined;
  const [year, month, day, hour, minute] = [m[1], m[2], m[3], m[4], m[5]].map(Number) as [
    number,
    number,
    number,
    number,
    number,
  ];
  const second = Number(m[6] ?? '0');
  if (hour > 23 || minute > 59 || second > 59) return undefined;
  let offsetMinutes = 0;
  if (m[8]?.toUpperCase() !== 'Z') {
    const offsetHours = Number(m[10]);
    const offsetMins = Number(m[11]);
    if (offsetHours > 23 || offsetMins > 59) return undefined;
    offsetMinutes = (m[9] === '-' ? -1 : 1) * (offsetHours * 60 + offsetMins);
  }
  // setUTCFullYear, not Date.UTC: Date.UTC maps years 0-99 to 1900-1999.
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  if (date.getUTCFullYear() !== year || date.getUTCMonth() !== month - 1 || date.getUTCDate() !== day) {
    return undefined; // Date rolls Feb 30 over to March; only a round trip proves the date real
  }
  date.setUTCHours(hour, minute, second, 0);
  const fraction = Number((m[7] ?? '').padEnd(6, '0').slice(0, 6));
  const micros = (date.getTime() - offsetMinutes * 60_000) * 1000 + fraction;
  return Number.isSafeInteger(micros) ? { micros, iso: formatMicros(micros) } : undefined;
}

/** The instant of a Date (millisecond precision). */
export function instantOfDate(date: Date): Instant {
  const micros = date.getTime() * 1000;
  return { micros, iso: formatMicros(micros) };
}

/** 1780308000123456 → 2026-06-01T10:00:00.123456Z. */
export function formatMicros(micros: number): string {
  const seconds = Math.floor(micros / 1_000_000);
  const fraction = micros - seconds * 1_000_000;
  return `${new Date(seconds * 1000).toISOString().slice(0, 19)}.${String(fraction).padStart(6, '0')}Z`;
}
