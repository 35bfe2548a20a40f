/**
 * Workflow `restore`: point-in-time restore that never loses the current data.
 *
 * plan (newest verified backup at or before the target, L1 before L2 before L3) → stage on the
 * node's disk while the node keeps serving (download → SHA-256 → decompress → DuckDB
 * verification → replay archived log up to the target) → maintenance on → current file moved
 * aside (<db>.corrupted.<time>) → restored file swapped in → maintenance off → health check.
 * A backup that fails verification is marked bad and the next one is used (longer replay). Any
 * failure after the move-aside puts the original back and brings the node up (saga).
 *
 * Input (paste into the Temporal UI): { "pointInTime": "2026-11-26T09:30:00Z" }, or {} for
 * everything archived, or { "backupId": "latest", "target": "scratch" }.
 */
import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  sleep,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { RestorePlanSummary } from '../activities';
import { compactTimestamp } from '../backup/ids';
import { RestoreInputSchema, type ParsedRestoreInput, type RestoreInput } from '../restore/input';
import { control, onNode } from './proxies';
import { DrBackupId, DrDatabase, DrOutcome, DrScenario } from './search-attributes';
import { inputOrFail } from './input';

export interface RestoreResult {
  database: string;
  node: string;
  target: 'in-place' | 'scratch';
  backupId: string;
  tier: string;
  /** Backups skipped because they failed verification, with the reason. */
  fellBackFrom: Array<{ backupId: string; reason: string }>;
  segmentsReplayed: number;
  rowsReplayed: number;
  rows: number;
  finalLsn: number;
  /** Where the previous database file was moved (in-place only). */
  movedAside?: string;
  /** Where the restored database is (scratch only). */
  path?: string;
  rtoSeconds: number;
  reason: string;
}

/**
 * An archive-class artifact (GLACIER, DEEP_ARCHIVE) is readable only after a retrieval that takes
 * hours: ask once, then check every 10 minutes. The wait is durable: a restarted worker goes on.
 */
async function waitForRetrieval(plan: RestorePlanSummary): Promise<void> {
  const deadline = Date.now() + 72 * 3_600_000;
  while (!(await control.retrieveArchived({ manifest: plan.backup }))) {
    if (Date.now() > deadline) {
      throw ApplicationFailure.create({
        type: 'RetrievalTimedOut',
        message: `${plan.backup.backupId} was not retrieved from its archive storage class within 72 h`,
        nonRetryable: true,
      });
    }
    await sleep('10 minutes');
  }
}

function causeOf(err: unknown): ApplicationFailure | undefined {
  const cause = err instanceof ActivityFailure ? err.cause : err;
  return cause instanceof ApplicationFailure ? cause : undefined;
}

function fail(err: unknown, context: string): never {
  const cause = causeOf(err);
  throw ApplicationFailure.create({
    type: cause?.type ?? 'RestoreFailed',
    message: `${context}: ${cause?.message ?? (err as Error).message}`,
    nonRetryable: true,
    cause: err instanceof Error ? err : undefined,
  });
}

export async function restore(input: RestoreInput = {}, options: { test?: boolean } = {}): Promise<RestoreResult> {
  const started = new Date();
  const request = inputOrFail(RestoreInputSchema, input, 'restore');
  upsertSearchAttributes([
    { key: DrDatabase, value: request.database },
    { key: DrScenario, value: options.test ? 'restore-test' : 'restore' },
  ]);
  const outcome = (value: string) => upsertSearchAttributes([{ key: DrOutcome, value }]);

  let plan: RestorePlanSummary;
  try {
    plan = await control.planRestoreFor({ request, excluded: [] });
  } catch (err) {
    outcome('failed');
    fail(err, 'restore refused');
  }
  const holder = workflowInfo().workflowId;
  await control.holdBackups({
    database: request.database,
    holder,
    backupIds: [plan.backup.backupId, ...plan.fallbacks],
    ttlMs: 24 * 3_600_000,
  });
  try {
    return await restoreFrom(plan, request, started, options);
  } finally {
    await CancellationScope.nonCancellable(() =>
      control.releaseBackups({ database: request.database, holder }).catch(() => undefined),
    );
  }
}

async function restoreFrom(
  initialPlan: RestorePlanSummary,
  request: ParsedRestoreInput,
  started: Date,
  options: { test?: boolean },
): Promise<RestoreResult> {
  let plan = initialPlan;
  const outcome = (value: string) => upsertSearchAttributes([{ key: DrOutcome, value }]);
  const fellBackFrom: RestoreResult['fellBackFrom'] = [];
  // A download cut off for good (object deleted) gives up after a few tries.
  const node = onNode(plan.node.taskQueue, { giveUpAfterAttempts: 5 });
  const stamp = compactTimestamp(started);
  const stagingDir =
    request.target === 'scratch'
      ? (request.scratchDir ?? `${plan.node.dataDir}/restore-scratch/${workflowInfo().workflowId}`)
      : `${plan.node.dataDir}/restore-staging/${workflowInfo().workflowId}`;

  // Stage: the node keeps serving; a bad backup is marked and the next one tried.
  let staged;
  for (;;) {
    upsertSearchAttributes([{ key: DrBackupId, value: plan.backup.backupId }]);
    if (plan.needsRetrieval) await waitForRetrieval(plan);
    try {
      staged = await node.long.stageBackup({
        manifest: plan.backup,
        stagingDir,
        fullScan: request.target === 'scratch',
      });
      break;
    } catch (err) {
      const cause = causeOf(err);
      if (cause?.type !== 'VerificationFailed') {
        await CancellationScope.nonCancellable(() => node.quick.removeStaging({ stagingDir }).catch(() => undefined));
        outcome('failed');
        fail(err, `restore from ${plan.backup.backupId} failed while staging; the node's database was not touched`);
      }
      await control.markBackupBad({ manifest: plan.backup, reason: cause.message });
      fellBackFrom.push({ backupId: plan.backup.backupId, reason: cause.message });
      try {
        plan = await control.planRestoreFor({ request, excluded: fellBackFrom.map((f) => f.backupId) });
      } catch (replanErr) {
        outcome('failed');
        fail(
          replanErr,
          `backup ${fellBackFrom.at(-1)!.backupId} failed verification and no other backup reaches the target`,
        );
      }
    }
  }

  let replayed;
  try {
    replayed = await node.long.replayLog({
      database: request.database,
      path: staged.path,
      fromLsn: plan.replayFromLsn,
      toLsn: plan.targetLsn,
      base: {
        rows: plan.backup.snapshot.rows,
        minId: plan.backup.snapshot.minId,
        maxId: plan.backup.snapshot.maxId,
        maxLsn: plan.backup.snapshot.maxLsn,
        checksum: plan.backup.snapshot.checksum,
      },
    });
  } catch (err) {
    await CancellationScope.nonCancellable(() => node.quick.removeStaging({ stagingDir }).catch(() => undefined));
    outcome('failed');
    fail(err, `replaying the log archive onto ${plan.backup.backupId} failed; the node's database was not touched`);
  }

  const base = {
    database: request.database,
    node: plan.node.id,
    target: request.target,
    backupId: plan.backup.backupId,
    tier: plan.backup.tier,
    fellBackFrom,
    segmentsReplayed: replayed.segments,
    rowsReplayed: replayed.rows,
    rows: replayed.fingerprint.rows,
    finalLsn: replayed.reachedLsn,
    reason: plan.reason,
  };

  if (request.target === 'scratch') {
    // A restore test only needed the verified copy to exist; nobody will use it.
    if (options.test) await node.quick.removeStaging({ stagingDir });
    const rtoSeconds = (Date.now() - started.getTime()) / 1000;
    await control.recordRestoreMetrics({ database: request.database, rtoSeconds, test: options.test ?? false });
    outcome('success');
    return { ...base, path: staged.path, rtoSeconds };
  }

  // Swap: the only part during which the node refuses writes.
  const who = { database: request.database, node: plan.node.id };
  let asidePath: string | undefined;
  try {
    await node.quick.setMaintenance({ ...who, enabled: true, reason: `restore ${workflowInfo().workflowId}` });
    asidePath = (await node.quick.swapIn({ ...who, stagedPath: staged.path, stamp })).asidePath;
    const opened = await node.quick.setMaintenance({ ...who, enabled: false });
    await node.quick.checkRestored({
      node: plan.node.id,
      lsn: replayed.reachedLsn,
      fingerprint: replayed.fingerprint,
      opened,
    });
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
    await CancellationScope.nonCancellable(() => node.quick.removeStaging({ stagingDir }).catch(() => undefined));
  }
  // The node now writes a new history after the restored LSN; the archive follows it.
  await control.retireArchiveAfter({
    database: request.database,
    lsn: replayed.reachedLsn,
    tag: workflowInfo().workflowId,
  });
  const rtoSeconds = (Date.now() - started.getTime()) / 1000;
  await control.recordRestoreMetrics({ database: request.database, rtoSeconds, test: options.test ?? false });
  outcome('success');
  return { ...base, movedAside: asidePath, rtoSeconds };
}
