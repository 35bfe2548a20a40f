/**
 * Workflow `restore`: point-in-time restore that never loses the current data.
 *
 * One node (or a scratch copy): plan on the node's own queue (newest verified backup at or before
 * the target, L1 before L2 before L3; only this node's L1, on its own disk) → stage on the node's
 * disk while the node keeps serving (download → SHA-256 → decompress → DuckDB verification →
 * replay archived log up to the target, leaving out excludeLsns) → maintenance on → current file
 * moved aside (<db>.corrupted.<time>) → restored file swapped in → maintenance off → health check.
 * A backup that fails verification is marked bad and the next one is used (longer replay). Any
 * failure after the move-aside puts the original back and brings the node up (saga).
 *
 * A node of a replicated cluster, in place: restore-cluster.ts (rebuilt from a node that holds
 * every acknowledged write when one can, else from backups up to what the cluster acknowledged,
 * one history for every node).
 *
 * Input (paste into the Temporal UI): {} to bring back everything acknowledged, or
 * { "pointInTime": "2026-11-26T09:30:00Z" }, { "excludeLsns": [{ "fromLsn": 4711, "toLsn": 4713 }] },
 * { "backupId": "latest", "target": "scratch" }.
 */
import { upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import type { ResolvedRestore, RestorePlanSummary } from '../activities';
import { type ClusterRestoreDecision, decideClusterRestore } from '../restore/cluster-plan';
import { RestoreInputSchema, type ParsedRestoreInput, type RestoreInput } from '../restore/input';
import { control, onNode } from './proxies';
import { restoreCluster } from './restore-cluster';
import {
  type RestoreResult,
  backupResult,
  fail,
  holdingBackups,
  markBackupsAfter,
  outcome,
  planOn,
  stageAndReplay,
  swapInPlace,
} from './restore-steps';
import { DrDatabase, DrScenario } from './search-attributes';
import { inputOrFail } from './input';

export type { RestoreResult } from './restore-steps';

/** What a restore would do, changing nothing. */
export interface RestorePreview {
  /** A node of a cluster, in place: how it would be restored and why. */
  cluster?: ClusterRestoreDecision;
  /** The backup and log range, when it would be restored from a backup. */
  plan?: RestorePlanSummary;
}

/**
 * Workflow `planRestore`: what a restore with this input would do (the CLI's `restore --preview`):
 * on a cluster, whether the node would be rebuilt from another one or restored from a backup, and
 * which backup and log range. Changes nothing.
 */
export async function planRestore(input: RestoreInput = {}): Promise<RestorePreview> {
  const request = inputOrFail(RestoreInputSchema, input, 'planRestore');
  try {
    const target = await control.resolveRestoreTarget({ request });
    if (target.cluster === undefined || request.target !== 'in-place') {
      return { plan: await planOn(target, request, []) };
    }
    const decision = decideClusterRestore(request, await control.clusterFacts({ cluster: target.cluster }));
    if (decision.kind !== 'restore') return { cluster: decision };
    const node =
      decision.target === target.node.id
        ? target
        : await control.resolveRestoreTarget({ request: { ...request, node: decision.target } });
    return { cluster: decision, plan: await planOn(node, request, [], decision.requiredLsn) };
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

  let target: ResolvedRestore;
  try {
    target = await control.resolveRestoreTarget({ request });
  } catch (err) {
    outcome('failed');
    fail(err, 'restore refused');
  }
  const { cluster } = target;
  if (cluster !== undefined && request.target === 'in-place') {
    return restoreCluster({ ...target, cluster }, request, started);
  }
  let plan: RestorePlanSummary;
  try {
    plan = await planOn(target, request, []);
  } catch (err) {
    outcome('failed');
    fail(err, 'restore refused');
  }
  return holdingBackups(plan, (hold) => restoreOneNode(target, plan, request, started, options, hold));
}

async function restoreOneNode(
  target: ResolvedRestore,
  plan: RestorePlanSummary,
  request: ParsedRestoreInput,
  started: Date,
  options: { test?: boolean },
  hold: (retrieving: boolean) => Promise<void>,
): Promise<RestoreResult> {
  const ready = await stageAndReplay(target, plan, request, hold);
  const base = backupResult(request, ready);
  const test = options.test ?? false;

  if (request.target === 'scratch') {
    // A restore test only needed the verified copy to exist; nobody will use it.
    if (test) await onNode(ready.plan.node.taskQueue).quick.removeStaging({ stagingDir: ready.stagingDir });
    const rtoSeconds = (Date.now() - started.getTime()) / 1000;
    await control.recordRestoreMetrics({ database: request.database, rtoSeconds, test });
    outcome('success');
    return { ...base, path: ready.staged.path, rtoSeconds };
  }

  const who = { database: request.database, node: ready.plan.node.id };
  const { epoch } = await control.nodeEpoch(who);
  const movedAside = await swapInPlace(ready, request.database, started);
  // The node now writes a new history after the restored LSN (or after the first batch left out):
  // a new epoch, and the archive retires what came after the fork in the old one.
  const firstLeftOut = ready.plan.excludedLsns?.[0]?.fromLsn;
  const fork = firstLeftOut !== undefined ? firstLeftOut - 1 : ready.replayed.reachedLsn;
  await control.retireArchiveAfter({ database: request.database, lsn: fork, tag: workflowInfo().workflowId });
  await control.openEpoch({ ...who, fromEpoch: epoch, forkLsn: fork });
  const rtoSeconds = (Date.now() - started.getTime()) / 1000;
  await markBackupsAfter(target, request.database, fork);
  await control.recordRestoreMetrics({ database: request.database, rtoSeconds, test });
  outcome('success');
  return { ...base, ...(movedAside ? { movedAside } : {}), rtoSeconds };
}
