/**
 * The typed client other services use: start a backup, await its result or poll its progress.
 *
 *   const dr = await KimiclawDr.connect(loadConfig());
 *   const handle = await dr.startBackup({ tier: 'L2', reason: 'before migration' });
 *   const result = await handle.result();
 */
import {
  FailoverInputSchema,
  RecoverNodeInputSchema,
  SwitchoverInputSchema,
  failoverWorkflowId,
  FAILOVER_TASK_TIMEOUT,
  monitorWorkflowId,
  recoverWorkflowId,
  switchoverWorkflowId,
  type FailoverInput,
  type RecoverNodeInput,
  type SwitchoverInput,
} from './failover/input';
import type { failover, monitorCluster, recoverNode, switchover } from './workflows/cluster';
import type { failbackRegion, failoverRegion } from './workflows/region-failover';
import type { drill } from './workflows/drill';
import { DrillInputSchema, drillWorkflowId, type DrillInput } from './drill/input';
import {
  FailbackRegionInputSchema,
  FailoverRegionInputSchema,
  regionFailbackWorkflowId,
  regionFailoverWorkflowId,
  type FailbackRegionInput,
  type FailoverRegionInput,
} from './failover/region-input';
import {
  Client,
  Connection,
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  type WorkflowHandle,
  type WorkflowHandleWithFirstExecutionRunId,
} from '@temporalio/client';
import { TypedSearchAttributes } from '@temporalio/common';
import { randomUUID } from 'node:crypto';
import type { TransferProgress } from './activities';
import type { Config } from './config';
import {
  archiveWorkflowId,
  backupWorkflowId,
  pruneWorkflowId,
  restorePlanWorkflowId,
  restoreTestWorkflowId,
  restoreWorkflowId,
} from './backup/ids';
import { RestoreTestInputSchema, type RestoreTestInput } from './restore/test-input';
import { PruneInputSchema, type PruneInput } from './backup/prune-input';
import { RestoreInputSchema, type RestoreInput } from './restore/input';
import { DEFAULT_DATABASE } from './domain';
import { BackupInputSchema, parseInput, type BackupInput } from './backup/input';
import type { BackupResult } from './workflows/backup';
import type { RestorePreview } from './workflows/restore';
import { backupStatusQuery, confirmDrillSignal, drillStateQuery, type BackupStatus } from './workflows/messages';
import { DrDatabase, DrTier } from './workflows/search-attributes';
import type { archiveLog, backup, planRestore, pruneBackups, restore, restoreTest } from './workflows';
import type { CatalogPruneResult } from './workflows/prune';

export type { BackupInput, BackupResult, BackupStatus, TransferProgress };

export interface BackupProgress {
  workflowId: string;
  /** RUNNING, COMPLETED, FAILED, … */
  state: string;
  status?: BackupStatus;
  /** Bytes of the current long step, from the activity's heartbeat. */
  transfer?: TransferProgress;
}

export class InvalidInputError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid input: ${problems.join('; ')}`);
    this.name = 'InvalidInputError';
  }
}

export async function connectTemporal(config: Config): Promise<Client> {
  const connection = await Connection.connect({
    address: config.temporal.address ?? 'localhost:7233',
    tls: config.temporal.tls || undefined,
    apiKey: config.temporal.apiKey,
  });
  return new Client({ connection, namespace: config.temporal.namespace });
}

export class KimiclawDr {
  constructor(
    readonly client: Client,
    readonly config: Config,
  ) {}

  static async connect(config: Config): Promise<KimiclawDr> {
    return new KimiclawDr(await connectTemporal(config), config);
  }

  /** Starts a backup; bad input is refused here already, with the same message the workflow gives. */
  async startBackup(
    input: BackupInput,
    options: { workflowId?: string } = {},
  ): Promise<WorkflowHandleWithFirstExecutionRunId<typeof backup>> {
    const parsed = parseInput(BackupInputSchema, input);
    if (!parsed.ok) throw new InvalidInputError(parsed.problems);
    const { database, tier } = parsed.value;
    return this.client.workflow.start<typeof backup>('backup', {
      taskQueue: this.config.temporal.taskQueue,
      workflowId: options.workflowId ?? backupWorkflowId(database, tier, new Date()),
      args: [input],
      typedSearchAttributes: new TypedSearchAttributes([
        { key: DrDatabase, value: database },
        { key: DrTier, value: tier },
      ]),
    });
  }

  /** Starts the database's log archiver unless it already runs (one per database). */
  async ensureLogArchive(
    database = DEFAULT_DATABASE,
  ): Promise<WorkflowHandleWithFirstExecutionRunId<typeof archiveLog>> {
    return this.client.workflow.start<typeof archiveLog>('archiveLog', {
      taskQueue: this.config.temporal.taskQueue,
      workflowId: archiveWorkflowId(database),
      args: [{ database }],
      workflowIdConflictPolicy: 'USE_EXISTING',
      typedSearchAttributes: new TypedSearchAttributes([{ key: DrDatabase, value: database }]),
    });
  }

  /** The database a failover input names, or the first with several nodes (as the workflow picks). */
  clusterName(cluster?: string): string {
    if (cluster) return cluster;
    const multi = this.config.databases.find((d) => d.nodes.length > 1);
    return (multi ?? this.config.databases[0]!).name;
  }

  /** Starts `failover` under the cluster's one id: a second start while one runs is refused. */
  async startFailover(input: FailoverInput): Promise<WorkflowHandleWithFirstExecutionRunId<typeof failover>> {
    const parsed = parseInput(FailoverInputSchema, input);
    if (!parsed.ok) throw new InvalidInputError(parsed.problems);
    const cluster = this.clusterName(parsed.value.cluster);
    return this.client.workflow.start<typeof failover>('failover', {
      taskQueue: this.config.temporal.taskQueue,
      workflowId: failoverWorkflowId(cluster),
      args: [{ ...input, cluster }],
      workflowIdReusePolicy: 'ALLOW_DUPLICATE',
    });
  }

  /**
   * Starts failoverRegion on the Temporal this client is connected to (the standby region's own):
   * the primary moves to `toRegion`'s most advanced replica. Refused (here already) without
   * `confirm: true`; the workflow refuses an unknown region, the region that holds the primary,
   * and a region failover while the old region still answers (without `force`).
   */
  async startFailoverRegion(
    input: FailoverRegionInput,
  ): Promise<WorkflowHandleWithFirstExecutionRunId<typeof failoverRegion>> {
    const parsed = parseInput(FailoverRegionInputSchema, input);
    if (!parsed.ok) throw new InvalidInputError(parsed.problems);
    const cluster = this.clusterName(parsed.value.cluster);
    return this.client.workflow.start<typeof failoverRegion>('failoverRegion', {
      taskQueue: this.config.temporal.taskQueue,
      workflowId: regionFailoverWorkflowId(cluster),
      args: [{ ...input, cluster }],
      workflowIdReusePolicy: 'ALLOW_DUPLICATE',
    });
  }

  /** Starts failbackRegion on this client's Temporal (the region the primary returns to). */
  async startFailbackRegion(
    input: FailbackRegionInput,
  ): Promise<WorkflowHandleWithFirstExecutionRunId<typeof failbackRegion>> {
    const parsed = parseInput(FailbackRegionInputSchema, input);
    if (!parsed.ok) throw new InvalidInputError(parsed.problems);
    const cluster = this.clusterName(parsed.value.cluster);
    return this.client.workflow.start<typeof failbackRegion>('failbackRegion', {
      taskQueue: this.config.temporal.taskQueue,
      workflowId: regionFailbackWorkflowId(cluster),
      args: [{ ...input, cluster }],
      workflowIdReusePolicy: 'ALLOW_DUPLICATE',
    });
  }

  /**
   * Starts a drill (workflow id drill-<cluster>: one at a time per cluster; a second is refused
   * while one runs). Bad input is refused here already, naming the field.
   */
  async startDrill(input: DrillInput): Promise<WorkflowHandleWithFirstExecutionRunId<typeof drill>> {
    const parsed = parseInput(DrillInputSchema, input);
    if (!parsed.ok) throw new InvalidInputError(parsed.problems);
    if (parsed.value.target === 'production' && !parsed.value.confirmed) {
      throw new InvalidInputError(['confirmed: a production drill injects real faults into the cluster; confirm it']);
    }
    const cluster = this.clusterName(undefined);
    try {
      return await this.client.workflow.start<typeof drill>('drill', {
        taskQueue: this.config.temporal.taskQueue,
        workflowId: drillWorkflowId(cluster),
        args: [input],
        workflowIdReusePolicy: 'ALLOW_DUPLICATE',
      });
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) {
        throw new InvalidInputError([
          `a drill of ${cluster} is already running (workflow ${drillWorkflowId(cluster)}); wait for it or cancel it`,
        ]);
      }
      throw err;
    }
  }

  /**
   * Confirms the running drill of the cluster (one started without "confirmed", from the UI):
   * answers what its steady-state check saw; refused when no drill awaits a confirmation.
   */
  async confirmDrill(): Promise<{ workflowId: string; steady: string }> {
    const cluster = this.clusterName(undefined);
    const handle = this.client.workflow.getHandle<typeof drill>(drillWorkflowId(cluster));
    const state = await handle.query(drillStateQuery).catch(() => undefined);
    if (state?.phase !== 'awaiting-confirmation') {
      throw new InvalidInputError([
        `no drill of ${cluster} awaits a confirmation (workflow ${drillWorkflowId(cluster)}: ${state ? state.phase : 'not running'})`,
      ]);
    }
    await handle.signal(confirmDrillSignal);
    return { workflowId: handle.workflowId, steady: state.steady ?? '' };
  }

  /** Starts a switchover; the topology lease refuses it while another change of the cluster runs. */
  async startSwitchover(
    input: SwitchoverInput,
    options: { workflowId?: string } = {},
  ): Promise<WorkflowHandleWithFirstExecutionRunId<typeof switchover>> {
    const parsed = parseInput(SwitchoverInputSchema, input);
    if (!parsed.ok) throw new InvalidInputError(parsed.problems);
    const cluster = this.clusterName(parsed.value.cluster);
    return this.client.workflow.start<typeof switchover>('switchover', {
      taskQueue: this.config.temporal.taskQueue,
      workflowId: options.workflowId ?? switchoverWorkflowId(cluster, new Date()),
      args: [{ ...input, cluster }],
    });
  }

  /**
   * Starts a restore (in place by default, or to scratch); bad input is refused here already. The
   * workflow plans it (which backup, which log) and says so in its result.
   */
  async startRestore(
    input: RestoreInput = {},
    options: { workflowId?: string } = {},
  ): Promise<WorkflowHandleWithFirstExecutionRunId<typeof restore>> {
    const parsed = parseInput(RestoreInputSchema, input);
    if (!parsed.ok) throw new InvalidInputError(parsed.problems);
    const { database } = parsed.value;
    return this.client.workflow.start<typeof restore>('restore', {
      taskQueue: this.config.temporal.taskQueue,
      workflowId: options.workflowId ?? restoreWorkflowId(database, new Date()),
      args: [input],
      typedSearchAttributes: new TypedSearchAttributes([{ key: DrDatabase, value: database }]),
    });
  }

  /** Restores the newest verified backup of a tier to scratch and checks it (what the schedule runs). */
  async startRestoreTest(
    input: RestoreTestInput = {},
    options: { workflowId?: string } = {},
  ): Promise<WorkflowHandleWithFirstExecutionRunId<typeof restoreTest>> {
    const parsed = parseInput(RestoreTestInputSchema, input);
    if (!parsed.ok) throw new InvalidInputError(parsed.problems);
    const { database, tier } = parsed.value;
    return this.client.workflow.start<typeof restoreTest>('restoreTest', {
      taskQueue: this.config.temporal.taskQueue,
      workflowId: options.workflowId ?? restoreTestWorkflowId(database, tier, new Date()),
      args: [input],
      typedSearchAttributes: new TypedSearchAttributes([
        { key: DrDatabase, value: database },
        { key: DrTier, value: tier },
      ]),
    });
  }

  /** Rejoins a node as replica once it answers (one recovery per node; a running one is reused). */
  async startRecoverNode(input: RecoverNodeInput): Promise<WorkflowHandleWithFirstExecutionRunId<typeof recoverNode>> {
    const parsed = parseInput(RecoverNodeInputSchema, input);
    if (!parsed.ok) throw new InvalidInputError(parsed.problems);
    const cluster = this.clusterName(parsed.value.cluster);
    return this.client.workflow.start<typeof recoverNode>('recoverNode', {
      taskQueue: this.config.temporal.taskQueue,
      workflowId: recoverWorkflowId(cluster, parsed.value.node),
      args: [{ ...input, cluster }],
      workflowIdConflictPolicy: 'USE_EXISTING',
    });
  }

  /** Starts the cluster's monitor unless it already runs (one per cluster). */
  async ensureMonitor(cluster?: string): Promise<WorkflowHandleWithFirstExecutionRunId<typeof monitorCluster>> {
    const name = this.clusterName(cluster);
    return this.client.workflow.start<typeof monitorCluster>('monitorCluster', {
      taskQueue: this.config.temporal.taskQueue,
      workflowId: monitorWorkflowId(name),
      args: [{ cluster: name }],
      workflowTaskTimeout: FAILOVER_TASK_TIMEOUT,
      workflowIdConflictPolicy: 'USE_EXISTING',
    });
  }

  /**
   * Applies a tier's retention now and waits for the result: one per catalog, each pruned on the
   * host that holds it (a node's L1 by that node's worker). `dryRun` deletes nothing.
   */
  async prune(input: PruneInput): Promise<CatalogPruneResult[]> {
    const parsed = parseInput(PruneInputSchema, input);
    if (!parsed.ok) throw new InvalidInputError(parsed.problems);
    const { database, tier } = parsed.value;
    return this.client.workflow.execute<typeof pruneBackups>('pruneBackups', {
      taskQueue: this.config.temporal.taskQueue,
      workflowId: pruneWorkflowId(database, tier, new Date(), randomUUID().slice(0, 8)),
      args: [input],
    });
  }

  /** Which backup and log range a restore with this input would use, planned on the node's host; changes nothing. */
  async previewRestore(input: RestoreInput): Promise<RestorePreview> {
    const parsed = parseInput(RestoreInputSchema, input);
    if (!parsed.ok) throw new InvalidInputError(parsed.problems);
    return this.client.workflow.execute<typeof planRestore>('planRestore', {
      taskQueue: this.config.temporal.taskQueue,
      workflowId: restorePlanWorkflowId(parsed.value.database, new Date(), randomUUID().slice(0, 8)),
      args: [input],
    });
  }

  backupHandle(workflowId: string): WorkflowHandle<typeof backup> {
    return this.client.workflow.getHandle<typeof backup>(workflowId);
  }

  async backupResult(workflowId: string): Promise<BackupResult> {
    return this.backupHandle(workflowId).result();
  }

  /** Where a backup stands: its phase (query) and the bytes of its current transfer (heartbeat). */
  async backupProgress(workflowId: string): Promise<BackupProgress> {
    const handle = this.backupHandle(workflowId);
    const description = await handle.describe();
    const state = description.status.name;
    let status: BackupStatus | undefined;
    if (state === 'RUNNING') {
      status = await handle.query(backupStatusQuery).catch((err: unknown) => {
        if (err instanceof WorkflowNotFoundError) throw err;
        return undefined;
      });
    }
    const pending = description.raw.pendingActivities ?? [];
    const converter = this.client.options.loadedDataConverter.payloadConverter;
    let transfer: TransferProgress | undefined;
    for (const activity of pending) {
      const first = activity.heartbeatDetails?.payloads?.[0];
      if (first) transfer = converter.fromPayload<TransferProgress>(first);
    }
    return { workflowId, state, status, transfer };
  }

  /** The reason the newest attempt of each pending activity failed: what the workflow waits for. */
  async pendingFailures(workflowId: string): Promise<string[]> {
    const description = await this.backupHandle(workflowId).describe();
    return (description.raw.pendingActivities ?? [])
      .map((a) => a.lastFailure?.message)
      .filter((m): m is string => typeof m === 'string' && m.length > 0);
  }
}
