/**
 * Moving the primary between regions (docs/architecture.md, "Regions"): what failoverRegion and
 * failbackRegion ask of the config center, the nodes and this region's Temporal. Nothing here
 * needs the region that holds the primary now: its nodes are probed only to refuse a failover
 * while they still answer, and its leadership lease is read from the config center's majority
 * and waited out.
 */
import { Context } from '@temporalio/activity';
import { WorkflowNotFoundError } from '@temporalio/client';
import { TypedSearchAttributes } from '@temporalio/common';
import { archiveWorkflowId } from '../backup/ids';
import { regionCopyWorkflowId } from '../region/copy-plan';
import { DrDatabase } from '../workflows/search-attributes';
import { clusterOfConfig } from '../cluster';
import { homeRegion } from '../config';
import { type PrimaryRecord, openConfigCenter, readPrimary, type ConfigCenter } from '../config-center';
import { InputProblem, Unavailable } from '../errors';
import { FAILOVER_TASK_TIMEOUT, monitorWorkflowId } from '../failover/input';
import { REBUILD_STATES } from '../failover/node-states';
import { type ApplyResult, applySchedules, resumeStoodDown, standDownSchedules } from '../schedules';
import { type NodeView, primaryKey, probeNode } from './cluster';
import type { ActivityDeps } from './index';

/** Where each node renews its leadership lease (the node's default --leader-key). */
export const leaderKey = (cluster: string) => `/services/${cluster}/leader`;

export interface LeaderRecord {
  node: string;
  epoch: number;
  until: string;
}

export interface RegionMovePlan {
  cluster: string;
  fromRegion: string;
  toRegion: string;
  primary: PrimaryRecord;
  /** Nodes of the region that holds the primary, and of the one that takes it. */
  fromNodes: string[];
  toNodes: string[];
  /** Nodes of fromRegion that answered a probe, described ("a1: primary, epoch 3"). */
  answering: string[];
  /** fromRegion is a declared standby region (its store can be copied from). */
  fromIsStandby: boolean;
  webhooks: number;
}

/** Probe timeout of the region move's checks: a lost region's nodes must not hold it up long. */
const PROBE_MS = 1_000;

export function createRegionFailoverActivities({ config }: ActivityDeps) {
  let center: ConfigCenter | undefined;
  const cc = () => (center ??= openConfigCenter(config.cluster.configCenter));

  function regions() {
    const declared = config.regions;
    if (!declared) {
      throw new InputProblem(
        'toRegion',
        'no regions are declared in the config (declare "regions": { "primary", "standby": [...] } first)',
      );
    }
    return declared;
  }

  /** The region of a node: its own, else the primary region. */
  function regionOfNode(nodes: ReadonlyArray<{ id: string; region?: string }>, id: string): string {
    return nodes.find((n) => n.id === id)?.region ?? regions().primary;
  }

  /**
   * Checks a region move against the config and the cluster as it is; refuses (InputProblem,
   * field named) what cannot or must not be done, before anything is changed. `kind`: a failover
   * is for a region that is lost (refused while a node of it answers, unless forced); a failback
   * is a planned move (the primary must answer, and a node of toRegion must).
   */
  async function planRegionMove(input: {
    cluster?: string;
    toRegion: string;
    kind: 'failover' | 'failback';
    force?: boolean;
  }): Promise<RegionMovePlan> {
    const declared = regions();
    const db = clusterOfConfig(config, input.cluster);
    const names = [declared.primary, ...declared.standby.map((r) => r.name)];
    if (!names.includes(input.toRegion)) {
      throw new InputProblem(
        'toRegion',
        `"${input.toRegion}" is not a declared region (accepted: ${names.map((n) => `"${n}"`).join(', ')})`,
      );
    }
    const { record } = await readPrimary(cc(), primaryKey(db.name));
    if (!record) throw new InputProblem('cluster', `no primary is recorded for ${db.name}: there is nothing to move`);
    const fromRegion = regionOfNode(db.nodes, record.node);
    if (fromRegion === input.toRegion) {
      throw new InputProblem(
        'toRegion',
        `region ${input.toRegion} already holds the primary of ${db.name} (${record.node}, epoch ${record.epoch}); nothing to move`,
      );
    }
    const fromNodes = db.nodes.filter((n) => regionOfNode(db.nodes, n.id) === fromRegion);
    const toNodes = db.nodes.filter((n) => regionOfNode(db.nodes, n.id) === input.toRegion);
    if (toNodes.length === 0) {
      throw new InputProblem(
        'toRegion',
        `region ${input.toRegion} has no node of ${db.name} (its nodes: ${db.nodes.map((n) => `${n.id} in ${regionOfNode(db.nodes, n.id)}`).join(', ')})`,
      );
    }
    const [fromViews, toViews] = await Promise.all([
      Promise.all(fromNodes.map((n) => probeNode(n, PROBE_MS))),
      Promise.all(toNodes.map((n) => probeNode(n, PROBE_MS))),
    ]);
    const answering = fromViews.filter((v) => v.reachable).map((v) => `${v.id}: ${v.role}, epoch ${v.epoch}`);
    if (input.kind === 'failover' && answering.length > 0 && !input.force) {
      throw new InputProblem(
        'force',
        `region ${fromRegion} still answers (${answering.join('; ')}): failoverRegion is for a region that is lost. ` +
          `Move a healthy primary with failbackRegion (a switchover across regions, nothing lost), ` +
          `or pass force: true to fence region ${fromRegion} anyway; nothing was changed`,
      );
    }
    if (input.kind === 'failback') {
      const primary = fromViews.find((v) => v.id === record.node);
      if (!primary?.reachable || primary.role !== 'primary') {
        throw new InputProblem(
          'toRegion',
          `the primary ${record.node} in region ${fromRegion} does not answer as primary (${describe(primary)}); ` +
            `a failback moves a healthy primary — use failoverRegion for a lost region`,
        );
      }
      if (!toViews.some((v) => v.reachable)) {
        throw new InputProblem(
          'toRegion',
          `no node of region ${input.toRegion} answers (${toViews.map(describe).join('; ')}); start them first`,
        );
      }
    }
    return {
      cluster: db.name,
      fromRegion,
      toRegion: input.toRegion,
      primary: record,
      fromNodes: fromNodes.map((n) => n.id),
      toNodes: toNodes.map((n) => n.id),
      answering,
      fromIsStandby: declared.standby.some((r) => r.name === fromRegion),
      webhooks: config.cluster.webhooks.length,
    };
  }

  /**
   * Claims the leadership lease for `epoch` (already taken by fenceEpoch): the key then names a
   * newer epoch, so the old primary can no longer renew it even if it still reaches the config
   * center. Returns the lease it held, whose `until` the move must wait out: until then the old
   * primary may still acknowledge (Patroni's rule: it stops before its lease expires).
   */
  async function claimLeaderLease(input: {
    cluster: string;
    node: string;
    epoch: number;
  }): Promise<{ previous?: LeaderRecord }> {
    const key = leaderKey(input.cluster);
    for (let i = 0; i < 10; i++) {
      const { value, revision } = await cc().get(key);
      const previous = parseLeader(value);
      if (previous && previous.epoch > input.epoch) {
        throw new Unavailable(
          `the leader key of ${input.cluster} names ${previous.node} at epoch ${previous.epoch}, newer than this move's ${input.epoch}`,
        );
      }
      // A retry finds its own claim, which kept the replaced lease's `until`.
      if (previous && previous.node === input.node && previous.epoch === input.epoch) return { previous };
      const claim: LeaderRecord = {
        node: input.node,
        epoch: input.epoch,
        until: previous && Date.parse(previous.until) > Date.now() ? previous.until : new Date().toISOString(),
      };
      if ((await cc().compareAndSwap(key, revision, claim)).ok) return previous ? { previous } : {};
    }
    throw new Unavailable(`the leader key of ${input.cluster} kept changing under 10 attempts to claim it`);
  }

  /** Sleeps (heartbeating) until `until` has passed by `marginMs`; returns how long it waited. */
  async function awaitInstant(input: { until: string; marginMs?: number }): Promise<{ waitedMs: number }> {
    const ctx = Context.current();
    const started = Date.now();
    const end = Date.parse(input.until) + (input.marginMs ?? 250);
    while (Date.now() < end) {
      ctx.heartbeat({ waitingUntil: new Date(end).toISOString() });
      await ctx.sleep(Math.min(1_000, Math.max(0, end - Date.now())));
    }
    return { waitedMs: Date.now() - started };
  }

  /**
   * The node of `region` to promote: the reachable replica of the recorded primary's `epoch` (or
   * later) with the highest LSN; without one, a node of the region that answers, to restore from
   * the region's store; none answers: refused with what each node said (nothing promoted).
   */
  async function electInRegion(input: { cluster: string; region: string; epoch: number; storeReach?: number }) {
    const db = clusterOfConfig(config, input.cluster);
    const nodes = db.nodes.filter((n) => regionOfNode(db.nodes, n.id) === input.region);
    const views = await Promise.all(nodes.map((n) => probeNode(n, 2_000)));
    const candidates = views
      // An empty or damaged node holds nothing to promote (REBUILD_STATES), and a replica of an
      // older epoch than the recorded primary's never followed it (a node that lost its disk and
      // started over).
      .filter(
        (v) =>
          v.reachable &&
          (v.role === 'replica' || v.role === 'fenced') &&
          !REBUILD_STATES.includes(v.status ?? '') &&
          (v.epoch ?? 0) >= input.epoch,
      )
      .sort((a, b) => (b.lsn ?? 0) - (a.lsn ?? 0));
    const chosen = candidates[0];
    // A replica behind the newest backup in this region's store (it was down, or lost its disk and
    // started over in the same epoch) would lose more than a restore from the store.
    const storeReach = input.storeReach ?? 0;
    const behind = chosen && (chosen.lsn ?? 0) < storeReach;
    if (chosen && !behind) {
      return {
        kind: 'promote' as const,
        node: chosen.id,
        url: nodes.find((n) => n.id === chosen.id)!.url,
        lsn: chosen.lsn ?? 0,
        why: `highest LSN (${chosen.lsn}) among region ${input.region}'s replicas`,
      };
    }
    // No replica with data (the region's node was empty, damaged or being rebuilt), or only one
    // behind the store: a node that answers is restored from this region's store (newest backup +
    // the archived log).
    const reachable = chosen ?? views.find((v) => v.reachable);
    if (!reachable) {
      throw new InputProblem(
        'toRegion',
        `no node of region ${input.region} answers (${views.map(describe).join('; ')}); nothing was promoted`,
      );
    }
    return {
      kind: 'restore' as const,
      node: reachable.id,
      url: nodes.find((n) => n.id === reachable.id)!.url,
      lsn: 0,
      why: behind
        ? `${reachable.id} holds LSN ${reachable.lsn ?? 0}, behind the newest backup in region ${input.region}'s store (LSN ${storeReach}): it is restored from the store`
        : `no node of region ${input.region} is a replica with data (${views.map(describe).join('; ')}): ${reachable.id} is restored from region ${input.region}'s store`,
    };
  }

  /**
   * This region runs the cluster now: schedules this region stood down with are resumed, the
   * config's schedules applied to this region's Temporal, and the monitor started here.
   */
  async function takeOverRegion(input: { cluster: string }): Promise<{
    region?: string;
    resumed: string[];
    schedules: ApplyResult;
    monitor: string;
    archive: string;
    copies: string[];
  }> {
    const client = Context.current().client;
    const resumed = await resumeStoodDown(client);
    const schedules = await applySchedules(client, config);
    const monitor = monitorWorkflowId(input.cluster);
    await client.workflow.start('monitorCluster', {
      taskQueue: config.temporal.taskQueue,
      workflowId: monitor,
      args: [{ cluster: input.cluster }],
      workflowTaskTimeout: FAILOVER_TASK_TIMEOUT,
      workflowIdConflictPolicy: 'USE_EXISTING',
    });
    const region = homeRegion(config);
    // Back in the primary region, its store is copied to the standby regions again (a copy that
    // stood down while another region ran the cluster ended). Before the archiver starts: a copy
    // still pulling from the standby must be gone before this store is written again.
    const copies: string[] = [];
    if (region !== undefined && region === config.regions?.primary) {
      for (const standby of config.regions.standby) {
        const id = regionCopyWorkflowId(standby.name);
        // A copy that was pulling from the standby (while it ran the cluster) is replaced: the
        // failback has pulled once more, and from now on this region's store is copied there.
        await client.workflow.start('copyToRegion', {
          taskQueue: config.temporal.taskQueue,
          workflowId: id,
          args: [{ region: standby.name }],
          workflowIdConflictPolicy: 'TERMINATE_EXISTING',
        });
        copies.push(id);
      }
    }
    // The log archive goes on into this region's store, from the new primary.
    const archive = archiveWorkflowId(input.cluster);
    await client.workflow.start('archiveLog', {
      taskQueue: config.temporal.taskQueue,
      workflowId: archive,
      args: [{ database: input.cluster }],
      workflowIdConflictPolicy: 'USE_EXISTING',
      typedSearchAttributes: new TypedSearchAttributes([{ key: DrDatabase, value: input.cluster }]),
    });
    return { ...(region ? { region } : {}), resumed, schedules, monitor, archive, copies };
  }

  /**
   * The cluster is run from another region: this region's schedules are paused (not deleted) and
   * its log archiver is stopped (the other region archives into its own store now). Its copy
   * with the other region turns round by itself (copyToRegionPass) and pulls that region's store.
   */
  async function standDown(input: { cluster: string; why: string }): Promise<{ paused: string[]; stopped: string[] }> {
    const client = Context.current().client;
    const paused = await standDownSchedules(client, input.why);
    const stopped: string[] = [];
    const archive = archiveWorkflowId(input.cluster);
    try {
      const handle = client.workflow.getHandle(archive);
      if ((await handle.describe()).status.name === 'RUNNING') {
        await handle.cancel();
        stopped.push(archive);
      }
    } catch (err) {
      if (!(err instanceof WorkflowNotFoundError)) throw err;
    }
    return { paused, stopped };
  }

  return { planRegionMove, claimLeaderLease, awaitInstant, electInRegion, takeOverRegion, standDown };
}

function parseLeader(value: unknown): LeaderRecord | undefined {
  const v = value as Partial<LeaderRecord> | undefined;
  if (!v || typeof v.node !== 'string' || typeof v.epoch !== 'number' || typeof v.until !== 'string') return undefined;
  return { node: v.node, epoch: v.epoch, until: v.until };
}

function describe(view: NodeView | undefined): string {
  if (!view) return 'not probed';
  return view.reachable
    ? `${view.id}: ${view.role} of epoch ${view.epoch}${view.status ? ` (${view.status})` : ''}`
    : `${view.id}: unreachable`;
}
