/**
 * The steps a restore takes on one node, shared by the single-node path (restore.ts) and the
 * cluster path (restore-cluster.ts): stage a verified backup on the node's disk and roll it forward
 * with the archived log while the node keeps serving; swap it in (the current file moved aside,
 * never deleted, and put back if anything fails after: docs/architecture.md, rule 6); mark the
 * backups of an abandoned history bad.
 */
import {
  ApplicationFailure,
  CancellationScope,
  sleep,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { ResolvedRestore, RestorePlanSummary, StagedRestore } from '../activities';
import type { ContentVerification } from '../backup/content-check';
import { compactTimestamp } from '../backup/ids';
import { RETRIEVAL_DEADLINE_MS, RETRIEVAL_POLL_MS, backupHoldMs } from '../restore/hold';
import type { ParsedRestoreInput } from '../restore/input';
import type { LsnRange } from '../restore/segments';
import { applicationCause, explainFailure } from './failure';
import { catalogAt, control, onNode } from './proxies';
import { DrBackupId, DrOutcome } from './search-attributes';

export interface RestoreResult {
  database: string;
  node: string;
  target: 'in-place' | 'scratch';
  /**
   * How: from a backup and the archived log, or rebuilt from another node of the cluster that
   * holds every acknowledged write (nothing lost, no backup read).
   */
  method: 'backup' | 'rebuild';
  /** rebuild: the node the restored one was rebuilt from. */
  rebuiltFrom?: string;
  /** The restored node was the primary: the cluster failed over first. */
  failedOver?: { newPrimary: string; epoch: number };
  backupId?: string;
  tier?: string;
  /** Backups skipped because they failed verification, with the reason. */
  fellBackFrom: Array<{ backupId: string; reason: string }>;
  /** How the backup used was verified: its fingerprint version, and whether a checksum was compared. */
  verification?: ContentVerification;
  segmentsReplayed: number;
  rowsReplayed: number;
  rows?: number;
  finalLsn: number;
  /** A cluster restored from backups: the epoch its restored history opened. */
  epoch?: number;
  /** Acknowledged LSNs that could not be brought back (accepted with acceptLoss). */
  lost?: LsnRange;
  /** Acknowledged LSNs after the point asked for, discarded on purpose; kept in the moved-aside file. */
  discarded?: LsnRange;
  /** Batches left out (excludeLsns): how many events each range held, and their ids. */
  leftOut?: Array<LsnRange & { events: number; firstId: number | null; lastId: number | null }>;
  /** The other nodes of the cluster afterwards: rejoined (their tail cut at the fork), rebuilt, or still away. */
  followers?: Array<{ node: string; how: 'rejoined' | 'rebuilt' | 'away' }>;
  /** Where the previous database file was moved (in-place only). */
  movedAside?: string;
  /** Where the restored database is (scratch only). */
  path?: string;
  rtoSeconds: number;
  reason: string;
}

/** Fails the workflow with the cause's type and message at the top, after `context`. */
export function fail(err: unknown, context: string): never {
  throw explainFailure(err, context, 'RestoreFailed');
}

export const outcome = (value: string) => upsertSearchAttributes([{ key: DrOutcome, value }]);

/** Plans on the node's own queue: the node's L1 catalog is readable only on its host. */
export function planOn(
  target: ResolvedRestore,
  request: ParsedRestoreInput,
  excluded: string[],
  requiredLsn?: number,
): Promise<RestorePlanSummary> {
  return onNode(target.node.taskQueue).quick.planRestoreFor({
    request,
    node: target.node.id,
    excluded,
    ...(requiredLsn === undefined ? {} : { requiredLsn }),
  });
}

/**
 * Holds the plan's backups against retention for as long as the restore may need them (renewed
 * while it waits for a retrieval), runs `work`, and lets go.
 */
export async function holdingBackups<T>(
  plan: RestorePlanSummary,
  work: (hold: (retrieving: boolean) => Promise<void>) => Promise<T>,
): Promise<T> {
  const holder = workflowInfo().workflowId;
  const hold = (retrieving: boolean) =>
    control.holdBackups({
      database: plan.database,
      holder,
      backupIds: [plan.backup.backupId, ...plan.fallbacks],
      ttlMs: backupHoldMs(retrieving),
    });
  await hold(plan.needsRetrieval);
  try {
    return await work(hold);
  } finally {
    await CancellationScope.nonCancellable(() =>
      control.releaseBackups({ database: plan.database, holder }).catch(() => undefined),
    );
  }
}

/**
 * An archive-class artifact (GLACIER, DEEP_ARCHIVE) is readable only after a retrieval that takes
 * hours: ask once, then check every 10 minutes, renewing the hold on the backups each time. The
 * wait is durable: a restarted worker goes on.
 */
async function waitForRetrieval(plan: RestorePlanSummary, hold: (retrieving: true) => Promise<void>): Promise<void> {
  const deadline = Date.now() + RETRIEVAL_DEADLINE_MS;
  while (!(await control.retrieveArchived({ manifest: plan.backup }))) {
    if (Date.now() > deadline) {
      throw ApplicationFailure.create({
        type: 'RetrievalTimedOut',
        message: `${plan.backup.backupId} was not retrieved from its archive storage class within ${RETRIEVAL_DEADLINE_MS / 3_600_000} h`,
        nonRetryable: true,
      });
    }
    await sleep(RETRIEVAL_POLL_MS);
    await hold(true);
  }
}

export type Replayed = Awaited<ReturnType<ReturnType<typeof onNode>['long']['replayLog']>>;

/** A backup staged on the node's disk and rolled forward: ready to swap in, or to keep (scratch). */
export interface Staged {
  plan: RestorePlanSummary;
  staged: StagedRestore;
  replayed: Replayed;
  fellBackFrom: RestoreResult['fellBackFrom'];
  stagingDir: string;
}

/**
 * Stage: download → SHA-256 → decompress → DuckDB verification → replay of the archived log up to
 * the plan's target (leaving out its excluded batches), on the node's disk while it keeps
 * serving. A backup that fails verification is marked bad and the next one is planned. Nothing of
 * the node's own database is touched; on failure the staging directory is removed.
 */
export async function stageAndReplay(
  target: ResolvedRestore,
  initialPlan: RestorePlanSummary,
  request: ParsedRestoreInput,
  hold: (retrieving: boolean) => Promise<void>,
  requiredLsn?: number,
): Promise<Staged> {
  let plan = initialPlan;
  const fellBackFrom: RestoreResult['fellBackFrom'] = [];
  // A download cut off for good (object deleted) gives up after a few tries.
  const node = onNode(plan.node.taskQueue, { giveUpAfterAttempts: 5 });
  const stagingDir =
    request.target === 'scratch'
      ? (request.scratchDir ?? `${plan.node.dataDir}/restore-scratch/${workflowInfo().workflowId}`)
      : `${plan.node.dataDir}/restore-staging/${workflowInfo().workflowId}`;
  const cleanUp = () =>
    CancellationScope.nonCancellable(() => node.quick.removeStaging({ stagingDir }).catch(() => undefined));

  let staged: StagedRestore;
  for (;;) {
    upsertSearchAttributes([{ key: DrBackupId, value: plan.backup.backupId }]);
    if (plan.needsRetrieval) await waitForRetrieval(plan, hold);
    try {
      staged = await node.long.stageBackup({
        manifest: plan.backup,
        stagingDir,
        fullScan: request.target === 'scratch',
        limitMiBps: plan.downloadLimitMiBps,
      });
      break;
    } catch (err) {
      const cause = applicationCause(err);
      if (cause?.type !== 'VerificationFailed') {
        await cleanUp();
        outcome('failed');
        fail(err, `restore from ${plan.backup.backupId} failed while staging; the node's database was not touched`);
      }
      await node.quick.markBackupBad({ manifest: plan.backup, reason: cause.message });
      fellBackFrom.push({ backupId: plan.backup.backupId, reason: cause.message });
      try {
        plan = await planOn(
          target,
          request,
          fellBackFrom.map((f) => f.backupId),
          requiredLsn,
        );
      } catch (replanErr) {
        outcome('failed');
        fail(
          replanErr,
          `backup ${fellBackFrom.at(-1)!.backupId} failed verification and no other backup reaches the target`,
        );
      }
    }
  }

  try {
    const replayed = await node.long.replayLog({
      database: request.database,
      path: staged.path,
      fromLsn: plan.replayFromLsn,
      toLsn: plan.targetLsn,
      base: staged.fingerprint,
      ...(plan.excludedLsns ? { exclude: plan.excludedLsns } : {}),
    });
    return { plan, staged, replayed, fellBackFrom, stagingDir };
  } catch (err) {
    await cleanUp();
    outcome('failed');
    fail(err, `replaying the log archive onto ${plan.backup.backupId} failed; the node's database was not touched`);
  }
}

/** Rolls a staged file further forward (the head moved on while it was staged). */
export async function replayMore(ready: Staged, database: string, toLsn: number): Promise<Staged> {
  if (toLsn <= ready.replayed.reachedLsn) return ready;
  const node = onNode(ready.plan.node.taskQueue, { giveUpAfterAttempts: 5 });
  const more = await node.long.replayLog({
    database,
    path: ready.staged.path,
    fromLsn: ready.replayed.reachedLsn,
    toLsn,
    base: ready.replayed.fingerprint,
  });
  return {
    ...ready,
    replayed: {
      ...more,
      segments: ready.replayed.segments + more.segments,
      rows: ready.replayed.rows + more.rows,
      leftOut: ready.replayed.leftOut,
    },
  };
}

/**
 * Swap: the only part during which the node refuses writes. The current file (and its WAL) moves
 * aside to <db>.corrupted.<time>; the staged file takes its place; the node reopens it and must
 * report exactly what was staged. Any failure puts the original back and reopens it. Returns
 * where the original went.
 */
export async function swapInPlace(ready: Staged, database: string, started: Date): Promise<string | undefined> {
  const node = onNode(ready.plan.node.taskQueue, { giveUpAfterAttempts: 5 });
  const who = { database, node: ready.plan.node.id };
  const tag = workflowInfo().workflowId;
  let asidePath: string | undefined;
  try {
    await node.quick.setMaintenance({ ...who, enabled: true, reason: `restore ${tag}` });
    asidePath = (await node.quick.swapIn({ ...who, stagedPath: ready.staged.path, stamp: compactTimestamp(started) }))
      .asidePath;
    const opened = await node.quick.setMaintenance({ ...who, enabled: false });
    await node.quick.checkRestored({
      node: ready.plan.node.id,
      lsn: ready.replayed.reachedLsn,
      fingerprint: ready.replayed.fingerprint,
      opened,
    });
    return asidePath;
  } catch (err) {
    await CancellationScope.nonCancellable(async () => {
      await node.quick
        .setMaintenance({ ...who, enabled: true, reason: 'restore failed: putting the original back' })
        .catch(() => undefined);
      if (asidePath) await node.quick.swapBack({ ...who, asidePath });
      await node.quick.setMaintenance({ ...who, enabled: false });
    });
    outcome('failed');
    fail(err, `restore failed after the swap began; the original database is back in place and the node is up`);
  } finally {
    await CancellationScope.nonCancellable(() =>
      node.quick.removeStaging({ stagingDir: ready.stagingDir }).catch(() => undefined),
    );
  }
}

/**
 * Backups taken after `lsn` hold an abandoned history: every catalog marks them, each on the queue
 * that reaches it (a node's L1 on its own host, waiting for a host that is down).
 */
export async function markBackupsAfter(target: ResolvedRestore, database: string, lsn: number): Promise<void> {
  const tag = workflowInfo().workflowId;
  await Promise.all(
    target.catalogs.map((c) =>
      catalogAt(c.taskQueue, { untilDone: true }).markBackupsBadAfter({
        database,
        tier: c.tier,
        node: c.node,
        lsn,
        reason: `holds history after LSN ${lsn}, abandoned by restore ${tag}`,
      }),
    ),
  );
}

/** What a restore from a backup says about itself, whichever path it took. */
export function backupResult(
  request: ParsedRestoreInput,
  ready: Staged,
): Omit<RestoreResult, 'rtoSeconds'> & { method: 'backup' } {
  const { plan, staged, replayed } = ready;
  return {
    database: request.database,
    node: plan.node.id,
    target: request.target,
    method: 'backup',
    backupId: plan.backup.backupId,
    tier: plan.backup.tier,
    fellBackFrom: ready.fellBackFrom,
    verification: staged.verification,
    segmentsReplayed: replayed.segments,
    rowsReplayed: replayed.rows,
    rows: replayed.fingerprint.rows,
    finalLsn: replayed.reachedLsn,
    ...(plan.lost ? { lost: plan.lost } : {}),
    ...(replayed.leftOut.length > 0 ? { leftOut: replayed.leftOut } : {}),
    reason: plan.reason,
  };
}
