/**
 * The continuous log archive: the events written after each backup, in sealed segments keyed by
 * their (inclusive) LSN range and the epoch that wrote them,
 * `<database>/log/<startLsn>-<endLsn>-e<epoch>.ndjson.zst`, both LSNs zero-padded to 20 digits so
 * keys sort in LSN order. The epoch makes a key unique for its content: after a restore opens a
 * new epoch at an earlier LSN, the new history's segments never take the keys of the abandoned
 * ones (retired under log-retired/). Keys written before epochs were named (no `-e<n>`) still
 * read. A segment covers every LSN of its range; LSNs with no event inside it (batches left out
 * by a surgical restore) are holes of the history, not gaps of the archive. This file names
 * segments and decides which ones a restore replays. Pure: workflow code imports it.
 */
import { NAME_RE } from '../domain';

export const SEGMENT_LSN_DIGITS = 20;

export interface Segment {
  /** First LSN in the segment, ≥ 1, inclusive. */
  startLsn: number;
  /** Last LSN in the segment, inclusive, ≥ startLsn. */
  endLsn: number;
  /** Object key relative to the store's root. */
  key: string;
  /** Rows (events) in the whole segment, when its metadata says. */
  rows?: number;
  /** Timestamp of the first and last batch, ISO-8601 with µs, when its metadata says. */
  firstTs?: string;
  lastTs?: string;
  /** The epoch whose primary wrote these batches, when the key names it. */
  epoch?: number;
}

export interface ParsedSegmentKey {
  database: string;
  startLsn: number;
  endLsn: number;
  epoch?: number;
}

/** Apply LSNs fromLsn..toLsn (inclusive) of a segment: a sub-range when another step covers the rest. */
export interface ReplayStep {
  segment: Segment;
  fromLsn: number;
  toLsn: number;
}

/** Coverage stops at afterLsn; the archive resumes at nextStart (> afterLsn + 1). */
export interface ArchiveGap {
  afterLsn: number;
  nextStart: number;
}

export interface Coverage {
  /** In LSN order; together they apply each LSN of fromLsn+1..reachedLsn exactly once. */
  steps: ReplayStep[];
  /** The last LSN the steps reach (fromLsn itself when there is nothing to replay). */
  reachedLsn: number;
  /** Present when a later segment exists but does not join up. */
  gap?: ArchiveGap;
}

/** An inclusive LSN range. */
export interface LsnRange {
  fromLsn: number;
  toLsn: number;
}

/** The folder of a database's log segments, relative to the store's root. */
export function logFolder(database: string): string {
  return `${database}/log`;
}

/** kimiclaw, 1201, 1375, 3 → kimiclaw/log/00000000000000001201-00000000000000001375-e3.ndjson.zst */
export function segmentKey(database: string, startLsn: number, endLsn: number, epoch: number): string {
  if (!NAME_RE.test(database)) throw new RangeError(`"${database}" is not a database name`);
  checkRange(startLsn, endLsn);
  if (!Number.isSafeInteger(epoch) || epoch < 1) throw new RangeError(`epoch must be an integer ≥ 1, got ${epoch}`);
  return `${logFolder(database)}/${padLsn(startLsn)}-${padLsn(endLsn)}-e${epoch}.ndjson.zst`;
}

const SEGMENT_KEY_RE = /^([a-z0-9][a-z0-9_-]{0,62})\/log\/(\d{20})-(\d{20})(?:-e(\d{1,15}))?\.ndjson\.zst$/;

/** Reads a segment key; undefined for anything that is not exactly one (including end < start). */
export function parseSegmentKey(key: string): ParsedSegmentKey | undefined {
  const m = SEGMENT_KEY_RE.exec(key);
  if (!m) return undefined;
  const [, database, start, end, epochText] = m as unknown as [string, string, string, string, string | undefined];
  const startLsn = Number(start);
  const endLsn = Number(end);
  if (!Number.isSafeInteger(startLsn) || !Number.isSafeInteger(endLsn)) return undefined;
  if (startLsn < 1 || endLsn < startLsn) return undefined;
  if (epochText === undefined) return { database, startLsn, endLsn };
  const epoch = Number(epochText);
  return epoch >= 1 ? { database, startLsn, endLsn, epoch } : undefined;
}

/**
 * The LSN ranges the archive holds, merged where segments overlap or touch, in LSN order.
 * "Everything after LSN n" is replayable up to the end of the range that contains n + 1.
 */
export function coveredRanges(segments: readonly Segment[]): LsnRange[] {
  const sorted = [...segments].sort((a, b) => a.startLsn - b.startLsn || a.endLsn - b.endLsn);
  const ranges: LsnRange[] = [];
  for (const s of sorted) {
    checkRange(s.startLsn, s.endLsn, s.key);
    const last = ranges[ranges.length - 1];
    if (last && s.startLsn <= last.toLsn + 1) last.toLsn = Math.max(last.toLsn, s.endLsn);
    else ranges.push({ fromLsn: s.startLsn, toLsn: s.endLsn });
  }
  return ranges;
}

/** How far the archive replays contiguously after fromLsn, given coveredRanges(). */
export function reachFrom(ranges: readonly LsnRange[], fromLsn: number): number {
  const range = ranges.find((r) => r.fromLsn <= fromLsn + 1 && fromLsn + 1 <= r.toLsn);
  return range ? range.toLsn : fromLsn;
}

interface Best {
  partial: number;
  steps: number;
  prev?: number;
  step?: ReplayStep;
}

/**
 * The segments to replay after fromLsn (a backup's LSN), in order, up to the first gap or to
 * untilLsn when given (the last step is then cut at untilLsn). Overlapping segments (a range
 * archived again after a crash holds the same batches) never replay an LSN twice: a step may
 * apply only the part of its segment that is not covered yet. Among the ways to cover the
 * range, the plan takes whole segments where it can (their row counts are known and nothing is
 * downloaded for nothing), then the fewest segments.
 */
export function contiguousFrom(segments: readonly Segment[], fromLsn: number, untilLsn?: number): Coverage {
  checkLsn(fromLsn, 'fromLsn');
  if (untilLsn !== undefined) checkLsn(untilLsn, 'untilLsn');
  for (const s of segments) checkRange(s.startLsn, s.endLsn, s.key);
  const limit = untilLsn ?? Number.POSITIVE_INFINITY;
  if (fromLsn >= limit) return { steps: [], reachedLsn: fromLsn };

  const relevant = segments
    .filter((s) => s.endLsn > fromLsn)
    .sort((a, b) => a.startLsn - b.startLsn || a.endLsn - b.endLsn || compareText(a.key, b.key));
  const positions = [...new Set([fromLsn, ...relevant.map((s) => Math.min(s.endLsn, limit))])].sort((a, b) => a - b);

  // Shortest path over the positions a replay can stop at (segment ends), cheapest first by
  // (partial steps, steps). Positions only grow, so the segments that can continue from a
  // position are kept in a small sliding set instead of being searched for each time.
  const best = new Map<number, Best>([[fromLsn, { partial: 0, steps: 0 }]]);
  let active: Segment[] = [];
  let next = 0;
  for (const position of positions) {
    const here = best.get(position);
    if (!here || position >= limit) continue;
    while (next < relevant.length && (relevant[next] as Segment).startLsn <= position + 1) {
      active.push(relevant[next] as Segment);
      next++;
    }
    active = active.filter((s) => s.endLsn > position);
    for (const segment of active) {
      const step: ReplayStep = { segment, fromLsn: position + 1, toLsn: Math.min(segment.endLsn, limit) };
      const partial = here.partial + (isWholeSegment(step) ? 0 : 1);
      const steps = here.steps + 1;
      const known = best.get(step.toLsn);
      if (!known || partial < known.partial || (partial === known.partial && steps < known.steps)) {
        best.set(step.toLsn, { partial, steps, prev: position, step });
      }
    }
  }

  let reachedLsn = fromLsn;
  for (const position of best.keys()) reachedLsn = Math.max(reachedLsn, position);
  const steps: ReplayStep[] = [];
  for (let at: Best | undefined = best.get(reachedLsn); at?.step; at = best.get(at.prev as number)) {
    steps.unshift(at.step);
  }
  const coverage: Coverage = { steps, reachedLsn };
  if (reachedLsn < limit) {
    // Every segment still ending later starts past reachedLsn + 1, or coverage would go on;
    // relevant is sorted by startLsn, so the first one still ending later starts the next range.
    const resume = relevant.find((s) => s.endLsn > reachedLsn);
    if (resume) coverage.gap = { afterLsn: reachedLsn, nextStart: resume.startLsn };
  }
  return coverage;
}

/** True when a step applies its whole segment (so the segment's row count is the step's). */
export function isWholeSegment(step: ReplayStep): boolean {
  return step.fromLsn === step.segment.startLsn && step.toLsn === step.segment.endLsn;
}

/** Rows a step applies, when known: only whole segments with a row count say. */
export function stepRows(step: ReplayStep): number | undefined {
  return isWholeSegment(step) ? step.segment.rows : undefined;
}

function padLsn(lsn: number): string {
  return String(lsn).padStart(SEGMENT_LSN_DIGITS, '0');
}

function checkLsn(lsn: number, name: string): void {
  if (!Number.isSafeInteger(lsn) || lsn < 0) throw new RangeError(`${name} must be a non-negative integer, got ${lsn}`);
}

function checkRange(startLsn: number, endLsn: number, key?: string): void {
  const what = key ? `segment ${key}` : 'segment';
  if (!Number.isSafeInteger(startLsn) || startLsn < 1) {
    throw new RangeError(`${what}: startLsn must be an integer ≥ 1, got ${startLsn}`);
  }
  if (!Number.isSafeInteger(endLsn) || endLsn < startLsn) {
    throw new RangeError(`${what}: endLsn must be an integer ≥ startLsn (${startLsn}), got ${endLsn}`);
  }
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The epoch that wrote LSN `lsn`, from a node's epoch history ({ epoch, startLsn }: the epoch's
 * batches have LSNs above startLsn); 1 before the first promotion.
 */
export function epochOfLsn(history: readonly { epoch: number; startLsn: number }[], lsn: number): number {
  let epoch = 1;
  for (const h of history) if (h.startLsn < lsn) epoch = Math.max(epoch, h.epoch);
  return epoch;
}

/**
 * Where a segment sealed after `afterLsn` must end so that it holds one epoch only: the last LSN of
 * the epoch that wrote afterLsn + 1 (undefined: that epoch has not ended).
 */
export function epochEndAfter(
  history: readonly { epoch: number; startLsn: number }[],
  afterLsn: number,
): number | undefined {
  const starts = history.map((h) => h.startLsn).filter((start) => start > afterLsn);
  return starts.length > 0 ? Math.min(...starts) : undefined;
}
