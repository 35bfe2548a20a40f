/**
 * Workflow `restore`: point-in-time restore that never loses the current data.
 *
 * plan on the node's own queue (newest verified backup at or before the target, L1 before L2
 * before L3; only this node's L1, on its own disk) → stage on the
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
  ApplicationFailure,
  CancellationScope,
  sleep,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { ResolvedRestore, RestorePlanSummary } from '../activities';
import type { ContentVerification } from '../backup/content-check';
import { compactTimestamp } from '../backup/ids';
import { RETRIEVAL_DEADLINE_MS, RETRIEVAL_POLL_MS, backupHoldMs } from '../restore/hold';
import { RestoreInputSchema, type ParsedRestoreInput, type RestoreInput } from '../restore/input';
import { catalogAt, control, onNode } from './proxies';
import { DrBackupId, DrDatabase, DrOutcome, DrScenario } from './search-attributes';
import { applicationCause, explainFailure } from './failure';
import { inputOrFail } from './input';
import { withTopologyLease } from './lease';

export interface RestoreResult {
  database: string;
  node: string;
  target: 'in-place' | 'scratch';
  backupId: string;
  tier: string;
  /** Backups skipped because they failed verification, with the reason. */
  fellBackFrom: Array<{ backupId: string; reason: string }>;
  /** How the backup used was verified: its fingerprint version, and whether a checksum was compared. */
  verification: ContentVerification;
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

/** Fails the workflow with the cause's type and message at the top, after `context`. */
function fail(err: unknown, context: string): never {
  throw explainFailure(err, context, 'RestoreFailed');
}

/** Plans on the node's own queue: the node's L1 catalog is readable only on its host. */
function planOn(target: ResolvedRestore, request: ParsedRestoreInput, excluded: string[]): Promise<RestorePlanSummary> {
  return onNode(target.node.taskQueue).quick.planRestoreFor({ request, node: target.node.id, excluded });
}

/**
 * Workflow `planRestore`: which backup and log range a restore with this input would use (the
 * CLI's `restore --preview`). Changes nothing.
 */
export async function planRestore(input: RestoreInput = {}): Promise<RestorePlanSummary> {
  const request = inputOrFail(RestoreInputSchema, input, 'planRestore');
  try {
    return await planOn(await control.resolveRestoreTarget({ request }), request, []);
  } catch (err) {
    fail(err, 'restore refused');
  }
}

export async function restore(input: RestoreInput = {}, options: { test?: boolean } = {}): Promise<RestoreResult> {
  const started = new Date();
  const request = inputOrFail(RestoreInputSchema, input, 'restore');
  upsertSearchAttributes([
    { key: DrDatabase, value: request.database },
    { key: DrScenario, value: options.test ? 'restore-test' : 'restore' },
  ]);
  const outcome = (value: string) => upsertSearchAttributes([{ key: DrOutcome, value }]);

  let target: ResolvedRestore;
  let plan: RestorePlanSummary;
  try {
    target = await control.resolveRestoreTarget({ request });
    plan = await planOn(target, request, []);
  } catch (err) {
    outcome('failed');
    fail(err, 'restore refused');
  }
  const holder = workflowInfo().workflowId;
  const hold = (retrieving: boolean) =>
    control.holdBackups({
      database: request.database,
      holder,
      backupIds: [plan.backup.backupId, ...plan.fallbacks],
      ttlMs: backupHoldMs(retrieving),
    });
  await hold(plan.needsRetrieval);
  try {
    return await restoreFrom(target, plan, request, started, options, hold);
  } finally {
    await CancellationScope.nonCancellable(() =>
      control.releaseBackups({ database: request.database, holder }).catch(() => undefined),
    );
  }
}

async function restoreFrom(
  target: ResolvedRestore,
  initialPlan: RestorePlanSummary,
  request: ParsedRestoreInput,
  started: Date,
  options: { test?: boolean },
  hold: (retrieving: boolean) => Promise<void>,
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
        await CancellationScope.nonCancellable(() => node.quick.removeStaging({ stagingDir }).catch(() => undefined));
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

  let replayed;
  try {
    replayed = await node.long.replayLog({
      database: request.database,
      path: staged.path,
      fromLsn: plan.replayFromLsn,
      toLsn: plan.targetLsn,
      base: staged.fingerprint,
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
    verification: staged.verification,
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

  // Swap: the only part during which the node refuses writes. On a cluster it changes the
  // topology, so it runs under the cluster's lease (one change at a time).
  const who = { database: request.database, node: plan.node.id };
  const tag = workflowInfo().workflowId;
  const swap = async (): Promise<string | undefined> => {
    let asidePath: string | undefined;
    try {
      await node.quick.setMaintenance({ ...who, enabled: true, reason: `restore ${tag}` });
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
    }
    // The node now writes a new history after the restored LSN; the archive follows it.
    await control.retireArchiveAfter({ database: request.database, lsn: replayed.reachedLsn, tag });
    return asidePath;
  };
  let asidePath: string | undefined;
  try {
    asidePath = target.cluster
      ? await withTopologyLease({ cluster: target.cluster, purpose: 'restore', waitForHolder: true }, swap)
      : await swap();
  } catch (err) {
    outcome('failed');
    fail(err, `restore of ${plan.node.id} did not swap; the node's database was not touched`);
  } finally {
    await CancellationScope.nonCancellable(() => node.quick.removeStaging({ stagingDir }).catch(() => undefined));
  }
  const rtoSeconds = (Date.now() - started.getTime()) / 1000;
  // Backups taken after that LSN hold the abandoned history: every catalog marks them, each on
  // the queue that reaches it (a node's L1 on its own host, waiting for a host that is down).
  await Promise.all(
    target.catalogs.map((c) =>
      catalogAt(c.taskQueue, { untilDone: true }).markBackupsBadAfter({
        database: request.database,
        tier: c.tier,
        node: c.node,
        lsn: replayed.reachedLsn,
        reason: `holds history after LSN ${replayed.reachedLsn}, abandoned by restore ${tag}`,
      }),
    ),
  );
  await control.recordRestoreMetrics({ database: request.database, rtoSeconds, test: options.test ?? false });
  outcome('success');
  return { ...base, movedAside: asidePath, rtoSeconds };
}
