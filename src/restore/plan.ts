/**
 * Which backup a restore starts from and which log segments roll it forward. Pure: the caller
 * lists the manifests and the archive and resolves a point in time to an LSN; this decides, and
 * says why in one line. A refusal is an input problem (the workflow fails with InvalidInput).
 */
import type { Tier } from '../domain';
import { parseBackupId } from '../backup/ids';
import type { Manifest } from '../backup/manifest';
import { LATEST, type ParsedRestoreInput } from './input';
import { instantOfDate, parseInstant, type Instant } from './instant';
import {
  contiguousFrom,
  coveredRanges,
  reachFrom,
  stepRows,
  type LsnRange,
  type ReplayStep,
  type Segment,
} from './segments';

/** Storage classes whose objects must be restored (hours) before they can be read. */
export const ARCHIVE_STORAGE_CLASSES: readonly string[] = ['GLACIER', 'DEEP_ARCHIVE'];

/**
 * What fixed the target LSN: toLsn, pointInTime, the head the cluster proved acknowledged, or
 * neither (everything the archive holds).
 */
export type RestoreTargetKind = 'lsn' | 'pointInTime' | 'acknowledged' | 'archived';

export interface PlanRestoreArgs {
  /** Every manifest of the database, all tiers, any order (bad ones included). */
  backups: readonly Manifest[];
  /** The database's log archive. */
  segments: readonly Segment[];
  request: ParsedRestoreInput;
  now: Date;
  /** pointInTime resolved to the last LSN with ts ≤ pointInTime; required with pointInTime, ignored without. */
  targetLsnForTime?: number;
  /** The live node's LSN, when known. */
  headLsn?: number;
  /** Backups found bad during this restore, to fall back past. */
  excluded?: readonly string[];
  /**
   * The highest LSN the cluster proved acknowledged: a restore of "everything" must reach it, or
   * be refused unless request.acceptLoss (then the plan says what is lost).
   */
  requiredLsn?: number;
}

export interface RestorePlan {
  database: string;
  backup: Manifest;
  tier: Tier;
  targetKind: RestoreTargetKind;
  /** The restored database holds every LSN up to and including this one, and none after. */
  targetLsn: number;
  /** In LSN order, from backup.snapshot.lsn + 1 to targetLsn, each LSN once. */
  replay: ReplayStep[];
  /** Rows the replay adds, when every step's count is known. */
  replayRows?: number;
  /** Rows the restored database must have: backup rows + replayRows, when known. */
  expectedRows?: number;
  /** The artifact sits in an archive storage class and must be retrieved before download. */
  needsRetrieval: boolean;
  /** Other backups that reach the same target, best first, for when the chosen one is found bad. */
  fallbacks: Manifest[];
  /** LSNs the live node has that the restored database will not (headLsn > targetLsn). */
  notRestored?: LsnRange;
  /** Acknowledged LSNs the restore cannot bring back (accepted with acceptLoss). */
  lost?: LsnRange;
  /** Batches left out on purpose (request.excludeLsns), in LSN order. */
  excludedLsns?: LsnRange[];
  /** One line for people: what was chosen and why. */
  reason: string;
}

export type RestoreField = keyof ParsedRestoreInput;

export type PlanRestoreResult = { ok: true; plan: RestorePlan } | { ok: false; field: RestoreField; message: string };

const TIER_RANK: Record<Tier, number> = { L1: 0, L2: 1, L3: 2 };

export function planRestore(args: PlanRestoreArgs): PlanRestoreResult {
  const { request } = args;
  const { database } = request;
  const excluded = new Set(args.excluded ?? []);
  const ofDatabase = args.backups.filter((b) => b.database === database);
  // L1 lives on its node's disk: when the restore names a node, another node's L1 is out of reach.
  const onNode = (b: Manifest): boolean => !(request.node !== undefined && b.tier === 'L1' && b.node !== request.node);
  // A surgical restore starts from a backup taken before the first batch it leaves out.
  const leftOut = [...(request.excludeLsns ?? [])].sort((a, b) => a.fromLsn - b.fromLsn);
  const firstLeftOut = leftOut[0]?.fromLsn;
  const beforeLeftOut = (b: Manifest): boolean => firstLeftOut === undefined || b.snapshot.lsn < firstLeftOut;
  const candidates = ofDatabase.filter((b) => !b.bad && !excluded.has(b.backupId) && onNode(b) && beforeLeftOut(b));

  // The point asked for.
  if (request.pointInTime !== undefined && request.toLsn !== undefined) {
    return refuse('toLsn', 'give pointInTime or toLsn, not both');
  }
  let pit: Instant | undefined;
  if (request.pointInTime !== undefined) {
    pit = parseInstant(request.pointInTime);
    if (!pit) return refuse('pointInTime', `"${request.pointInTime}" is not an ISO-8601 time with a timezone`);
    const now = instantOfDate(args.now);
    if (pit.micros > now.micros) return refuse('pointInTime', `${pit.iso} is in the future (now ${now.iso})`);
  }

  // A named backup must exist and be usable.
  let named: Manifest | undefined;
  if (request.backupId !== undefined && request.backupId !== LATEST) {
    const id = request.backupId;
    named = ofDatabase.find((b) => b.backupId === id);
    if (!named) {
      // Only the node's own L1 is listed for it: another node's L1 backup is not even seen.
      const l1 = parseBackupId(id)?.tier === 'L1' && request.node !== undefined;
      const where = l1
        ? ` on node ${request.node} (an L1 backup is restored only on the node whose disk holds it)`
        : '';
      return refuse('backupId', `no backup ${id}${where}`);
    }
    if (named.bad) {
      return refuse(
        'backupId',
        `backup ${id} is marked bad (${named.bad.reason}, at ${named.bad.at}); name another backup or leave backupId out`,
      );
    }
    if (excluded.has(id)) {
      return refuse(
        'backupId',
        `backup ${id} was found bad during this restore; name another backup or leave backupId out`,
      );
    }
    if (!beforeLeftOut(named)) {
      return refuse(
        'backupId',
        `backup ${id} was taken at LSN ${named.snapshot.lsn}, so it holds batches excludeLsns leaves out (from LSN ${firstLeftOut}); ` +
          `name a backup taken before LSN ${firstLeftOut} or leave backupId out`,
      );
    }
    if (!onNode(named)) {
      return refuse(
        'backupId',
        `backup ${id} is an L1 backup on the disk of node ${named.node}; it cannot be restored on node ${request.node}`,
      );
    }
  }

  if (candidates.length === 0) {
    if (firstLeftOut !== undefined && ofDatabase.some((b) => !b.bad && onNode(b))) {
      return refuse(
        'excludeLsns',
        `no usable backup was taken before LSN ${firstLeftOut}, the first batch to leave out; the oldest usable one holds it`,
      );
    }
    return refuse('database', noUsableBackup(database, ofDatabase, excluded, request.node));
  }

  if (pit) {
    const oldest = oldestByCreation(candidates);
    if (oldest && pit.micros < oldest.micros) {
      return refuse(
        'pointInTime',
        `${pit.iso} is before the oldest usable backup, ${oldest.backup.backupId}, taken at ${oldest.backup.createdAt}`,
      );
    }
    if (args.targetLsnForTime === undefined) {
      throw new TypeError('planRestore: pointInTime was given but not resolved to targetLsnForTime');
    }
    checkLsn(args.targetLsnForTime, 'targetLsnForTime');
  }
  if (args.headLsn !== undefined) checkLsn(args.headLsn, 'headLsn');

  let kind: RestoreTargetKind = request.toLsn !== undefined ? 'lsn' : pit ? 'pointInTime' : 'archived';
  const requested = request.toLsn ?? (pit ? args.targetLsnForTime : undefined);
  const targetField: RestoreField = kind === 'pointInTime' ? 'pointInTime' : 'toLsn';
  const point = (lsn: number): string => `LSN ${lsn}${pit ? `, pointInTime ${pit.iso}` : ''}`;
  const ranges = coveredRanges(args.segments);
  const reach = (b: Manifest): number => reachFrom(ranges, b.snapshot.lsn);

  let chosen: Manifest;
  let targetLsn: number;
  let fallbacks: Manifest[];
  let lead: string;
  const notes: string[] = [];
  if (named || request.backupId === LATEST) {
    chosen = named ?? ([...candidates].sort(newestFirst)[0] as Manifest);
    if (requested !== undefined && chosen.snapshot.lsn > requested) {
      return refuse(
        'backupId',
        `backup ${chosen.backupId} was taken at LSN ${chosen.snapshot.lsn}, after the requested point (${point(requested)}); ` +
          'leave backupId out to use the newest backup at or before it',
      );
    }
    targetLsn = requested ?? reach(chosen);
    // A backup the operator named is what they asked for: no silent substitute.
    fallbacks = named ? [] : reaching(candidates, targetLsn, reach).filter((b) => b !== chosen);
    lead = named ? 'requested backup' : 'latest verified backup';
  } else {
    const pool = requested === undefined ? candidates : candidates.filter((b) => b.snapshot.lsn <= requested);
    const newest = [...pool].sort(newestFirst)[0];
    if (!newest) {
      const oldest = [...candidates].sort(newestFirst).pop() as Manifest;
      return refuse(
        targetField,
        `no usable backup at or before the requested point (${point(requested as number)}); ` +
          `the oldest usable, ${oldest.backupId}, was taken at LSN ${oldest.snapshot.lsn}`,
      );
    }
    // The newest backup reaches furthest: everything archived means as far as it reaches.
    targetLsn = requested ?? reach(newest);
    const eligible = reaching(pool, targetLsn, reach);
    // When none reaches the target, the newest shows where the archive stops (refused below).
    chosen = eligible[0] ?? newest;
    fallbacks = eligible.slice(1);
    const newer = eligible.filter((b) => b.snapshot.lsn > chosen.snapshot.lsn).map((b) => b.backupId);
    if (newer.length > 0) notes.push(`passed over newer ${newer.join(', ')}: needs retrieval from an archive class`);
    lead =
      requested === undefined ? 'newest verified backup' : `newest verified backup at or before ${point(requested)}`;
  }

  // "Everything" on a cluster means everything acknowledged, not merely what the archive holds.
  let lost: LsnRange | undefined;
  if (kind === 'archived' && args.requiredLsn !== undefined) {
    checkLsn(args.requiredLsn, 'requiredLsn');
    if (targetLsn < args.requiredLsn) {
      const atStake = { fromLsn: targetLsn + 1, toLsn: args.requiredLsn };
      if (!request.acceptLoss) {
        return refuse(
          'acceptLoss',
          `LSN ${atStake.fromLsn} → ${atStake.toLsn} (${atStake.toLsn - atStake.fromLsn + 1} LSNs) were acknowledged to clients ` +
            `but are not in the log archive, which ends at LSN ${targetLsn}; a restore from backups would lose them. ` +
            'Wait for the archive to catch up, restore from a node that holds them, or pass acceptLoss: true',
        );
      }
      lost = atStake;
    } else {
      targetLsn = args.requiredLsn;
      kind = 'acknowledged';
    }
  }
  const beyond = leftOut.filter((r) => r.toLsn > targetLsn);
  if (beyond.length > 0) {
    return refuse(
      'excludeLsns',
      `${beyond.map((r) => `${r.fromLsn}-${r.toLsn}`).join(', ')} lies beyond LSN ${targetLsn}, the last LSN this restore reaches (the head)`,
    );
  }

  const coverage = contiguousFrom(args.segments, chosen.snapshot.lsn, targetLsn);
  if (coverage.reachedLsn < targetLsn) {
    const where = coverage.gap
      ? `the log archive has a gap after LSN ${coverage.gap.afterLsn} (the next segment starts at LSN ${coverage.gap.nextStart})`
      : `the log archive ends at LSN ${coverage.reachedLsn}`;
    const live =
      args.headLsn !== undefined && args.headLsn > coverage.reachedLsn
        ? `; the live node is at LSN ${args.headLsn}, the rest is not archived`
        : '';
    return refuse(
      targetField,
      `${where}: backup ${chosen.backupId} (LSN ${chosen.snapshot.lsn}) rolls forward to LSN ${coverage.reachedLsn} at most, ` +
        `not to the requested point (${point(targetLsn)})${live}`,
    );
  }

  const rows = coverage.steps.map(stepRows);
  const replayRows = rows.every((r) => r !== undefined) ? rows.reduce((sum, r) => sum + r, 0) : undefined;
  const plan: RestorePlan = {
    database,
    backup: chosen,
    tier: chosen.tier,
    targetKind: kind,
    targetLsn,
    replay: coverage.steps,
    needsRetrieval: needsRetrieval(chosen),
    fallbacks,
    reason: '',
  };
  if (replayRows !== undefined) {
    plan.replayRows = replayRows;
    plan.expectedRows = chosen.snapshot.rows + replayRows;
  }
  if (args.headLsn !== undefined && args.headLsn > targetLsn) {
    plan.notRestored = { fromLsn: targetLsn + 1, toLsn: args.headLsn };
  }
  if (lost) plan.lost = lost;
  if (leftOut.length > 0) plan.excludedLsns = leftOut;
  const failed = [...excluded].filter((id) => ofDatabase.some((b) => b.backupId === id));
  if (failed.length > 0) notes.push(`passed over ${failed.join(', ')}: found bad during this restore`);
  plan.reason = describe(plan, lead, notes);
  return { ok: true, plan };
}

/** The backups a running restore may still read: retention must keep them (docs/architecture.md, rule 5). */
export function inUseBackupIds(plan: RestorePlan): string[] {
  return [plan.backup.backupId, ...plan.fallbacks.map((b) => b.backupId)];
}

/** True when the artifact's storage class needs a retrieval before it can be downloaded. */
export function needsRetrieval(backup: Manifest): boolean {
  const storageClass = backup.artifact.storageClass?.toUpperCase();
  return storageClass !== undefined && ARCHIVE_STORAGE_CLASSES.includes(storageClass);
}

/** Newest first: highest LSN, then L1 before L2 before L3 (faster to read), then latest created. */
function newestFirst(a: Manifest, b: Manifest): number {
  return (
    b.snapshot.lsn - a.snapshot.lsn ||
    TIER_RANK[a.tier] - TIER_RANK[b.tier] ||
    createdMs(b) - createdMs(a) ||
    (a.backupId < b.backupId ? 1 : a.backupId > b.backupId ? -1 : 0)
  );
}

/**
 * The backups that roll forward to target, best first: readable at once before those that need
 * a retrieval of hours from an archive class, then newest first.
 */
function reaching(backups: readonly Manifest[], target: number, reach: (b: Manifest) => number): Manifest[] {
  return backups
    .filter((b) => b.snapshot.lsn <= target && reach(b) >= target)
    .sort((a, b) => Number(needsRetrieval(a)) - Number(needsRetrieval(b)) || newestFirst(a, b));
}

function createdMs(b: Manifest): number {
  const ms = Date.parse(b.createdAt);
  return Number.isNaN(ms) ? Number.NEGATIVE_INFINITY : ms;
}

function oldestByCreation(backups: readonly Manifest[]): { backup: Manifest; micros: number } | undefined {
  let oldest: { backup: Manifest; micros: number } | undefined;
  for (const backup of backups) {
    // A date that cannot be read does not make the oldest: it cannot refuse anything.
    const created = parseInstant(backup.createdAt);
    if (created && (!oldest || created.micros < oldest.micros)) oldest = { backup, micros: created.micros };
  }
  return oldest;
}

function noUsableBackup(
  database: string,
  ofDatabase: readonly Manifest[],
  excluded: ReadonlySet<string>,
  node: string | undefined,
): string {
  if (ofDatabase.length === 0) return `no backup of database ${database}`;
  const bad = ofDatabase.filter((b) => b.bad).length;
  const failed = ofDatabase.filter((b) => !b.bad && excluded.has(b.backupId)).length;
  const elsewhere = ofDatabase.filter(
    (b) => !b.bad && !excluded.has(b.backupId) && node !== undefined && b.tier === 'L1' && b.node !== node,
  ).length;
  const why = [
    bad ? `${bad} marked bad` : '',
    failed ? `${failed} found bad during this restore` : '',
    elsewhere ? `${elsewhere} L1 on other nodes than ${node}` : '',
  ].filter(Boolean);
  return `no usable backup of database ${database} (${ofDatabase.length} in all: ${why.join(', ')})`;
}

function describe(plan: RestorePlan, lead: string, notes: readonly string[]): string {
  const { backup, replay, targetLsn } = plan;
  const parts = [`${lead}: ${backup.backupId} (${describeBackup(backup)})`];
  const from = backup.snapshot.lsn + 1;
  const segments = `${replay.length} archive segment${replay.length === 1 ? '' : 's'}`;
  parts.push(
    replay.length === 0
      ? `, nothing to replay (backup at LSN ${backup.snapshot.lsn})`
      : `, then ${segments}, LSN ${from} → ${targetLsn}`,
  );
  if (plan.targetKind === 'archived') parts.push(' (end of the log archive)');
  if (plan.targetKind === 'acknowledged') parts.push(' (everything acknowledged)');
  if (plan.excludedLsns) {
    parts.push(
      `, leaving out LSN ${plan.excludedLsns.map((r) => (r.fromLsn === r.toLsn ? `${r.fromLsn}` : `${r.fromLsn}-${r.toLsn}`)).join(', ')}`,
    );
  }
  if (plan.lost) {
    parts.push(
      `; LSN ${plan.lost.fromLsn} → ${plan.lost.toLsn} were acknowledged but are not archived: lost (acceptLoss)`,
    );
  }
  if (plan.needsRetrieval) parts.push(`; needs retrieval from ${backup.artifact.storageClass} first`);
  for (const note of notes) parts.push(`; ${note}`);
  if (plan.notRestored) {
    const { fromLsn, toLsn } = plan.notRestored;
    parts.push(
      plan.targetKind === 'archived'
        ? `; LSN ${fromLsn} → ${toLsn} on the live node are not in the archive and are not restored`
        : `; LSN ${fromLsn} → ${toLsn} on the live node are not restored`,
    );
  }
  return parts.join('');
}

function describeBackup(b: Manifest): string {
  if (b.tier === 'L1') return `L1 on ${b.node}`;
  const storageClass = b.artifact.storageClass;
  return storageClass && storageClass !== 'STANDARD' ? `${b.tier}, ${storageClass}` : b.tier;
}

function checkLsn(lsn: number, name: string): void {
  if (!Number.isSafeInteger(lsn) || lsn < 0) throw new RangeError(`${name} must be a non-negative integer, got ${lsn}`);
}

function refuse(field: RestoreField, message: string): PlanRestoreResult {
  return { ok: false, field, message };
}
