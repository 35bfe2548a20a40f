/**
 * A drill with target "isolated" (the default): nothing of the real cluster is touched but its
 * backups. The newest verified backup (and the archived log after it) is restored to a scratch
 * file on a node's host — which also proves the backups restore — and becomes the first node of a
 * private stack started beside it (its own Temporal server, S3 server, config center, nodes and
 * worker: src/drill/stack.ts). The scenarios run there as a confirmed production drill of the
 * copy, on the stack's own Temporal server; this workflow, on the real one, keeps the report and
 * always tears the stack down, also when the drill fails or is cancelled.
 */
import { CancellationScope, executeChild, isCancellation } from '@temporalio/workflow';
import type { ControlActivities } from '../activities';
import type { DrillReport } from '../drill/report';
import { formatDuration } from '../duration';
import { control, drillFailed, failureText, stackOn } from './drill-proxies';
import { restore, type RestoreResult } from './restore';

type PlannedDrill = Awaited<ReturnType<ControlActivities['drillPlan']>>;

export async function isolatedDrill(plan: PlannedDrill, id: string): Promise<DrillReport> {
  const report: DrillReport = {
    id,
    cluster: plan.cluster,
    target: 'isolated',
    reason: plan.reason,
    startedAt: Date.now(),
    status: 'running',
    scenarios: [],
    stack: { tornDown: false, detail: 'not started' },
  };
  const stack = report.stack!;
  // On a standby's host when the cluster is steady (not the primary's, which serves the writes).
  const now = await control.drillSteady({ cluster: plan.cluster });
  const preferred = now.steady ? now.standbys[0] : undefined;
  let seed: RestoreResult | undefined;
  try {
    const restoreStarted = Date.now();
    seed = await executeChild(restore, {
      workflowId: `${id}-seed`,
      args: [
        {
          database: plan.cluster,
          backupId: 'latest',
          target: 'scratch',
          ...(preferred ? { node: preferred } : {}),
        },
      ],
    }).catch((err: unknown) => {
      throw new Error(
        `no verified backup of ${plan.cluster} could be restored for the private stack: ${failureText(err)}`,
      );
    });
    Object.assign(stack, {
      backupId: seed.backupId,
      restoredLsn: seed.finalLsn,
      host: seed.node,
      restoreSeconds: (Date.now() - restoreStarted) / 1000,
      detail: 'starting',
    });
    const queue = plan.queues[seed.node]!;
    const started = await stackOn(queue, 1).drillStackStart({ drillId: id, cluster: plan.cluster, seed: seed.path! });
    stack.startSeconds = started.startSeconds;
    const objectives = Object.fromEntries(
      plan.scenarios.map((s) => {
        const o = plan.objectives[s];
        return [s, { rto: formatDuration(o.rtoMs), rpo: o.rpoMs === 0 ? '0' : formatDuration(o.rpoMs) }];
      }),
    );
    const { report: ran } = await stackOn(queue, 3).drillStackRun({
      drillId: id,
      drill: { scenarios: plan.scenarios, objectives, reason: `isolated drill ${id}: ${plan.reason}` },
    });
    report.scenarios = ran.scenarios;
    report.status = ran.status === 'passed' ? 'passed' : ran.status;
    if (ran.error) report.error = ran.error;
  } catch (err) {
    report.status = isCancellation(err) ? 'cancelled' : 'failed';
    report.error = failureText(err);
    if (isCancellation(err)) throw err;
  } finally {
    await CancellationScope.nonCancellable(async () => {
      if (seed) {
        const down = await stackOn(plan.queues[seed.node]!, 5)
          .drillStackStop({ drillId: id, seed: seed.path! })
          .catch((err: unknown) => ({ tornDown: false, detail: failureText(err) }));
        Object.assign(stack, down);
      }
      if (!seed) Object.assign(stack, { tornDown: true, detail: 'nothing was started' });
      if (!stack.tornDown) {
        // Loud: processes or files of the stack are left on the host for an operator.
        report.status = 'failed';
        report.error = `${report.error ? `${report.error}; ` : ''}the private stack was not torn down: ${stack.detail}`;
      }
      report.endedAt = Date.now();
      await control.drillSaveReport({ report });
    });
  }
  if (report.status !== 'passed') throw drillFailed(report);
  return report;
}
