/**
 * Activities of failover, switchover, recoverNode and monitorCluster: probing nodes, the config
 * center (epoch CAS, the primary record, the synchronous-standby record), promotion, demotion and
 * client notifications. They run on the control queue: nodes are reached over HTTP.
 *
 * Keys in the config center, per cluster (a database with several nodes):
 *   /services/<cluster>/primary  { node, url, epoch, since, failover? }  what clients follow
 *   /services/<cluster>/epoch    { epoch, by, at }                       bumped by CAS to fence
 *   /services/<cluster>/sync     { epoch, standbys, degraded, since }    who holds every
 *                                 acknowledged write; degraded: the primary acknowledges alone
 */
import { Context } from '@temporalio/activity';
import type { DatabaseConfig, NodeConfig } from '../config';
import { type ConfigCenter, type PrimaryRecord, casPrimary, openConfigCenter, readPrimary } from '../config-center';
import { InputProblem, Unavailable } from '../errors';
import { NodeClient } from '../node-client';
import { type PrimaryChangeEvent, deliverWebhook } from '../notify/webhook';
import type { ActivityDeps } from './index';

/** What a node's GET /health says about replication (docs/node-api.md). */
export interface NodeView {
  id: string;
  url: string;
  reachable: boolean;
  error?: string;
  status?: string;
  role?: string;
  epoch?: number;
  lsn?: number;
  syncState?: string;
  allowDegraded?: boolean;
  replicas?: Array<{
    id: string;
    mode: string;
    state: string;
    appliedLsn: number | null;
    lagLsn: number | null;
    lastAckMsAgo: number | null;
  }>;
  primary?: { id: string; url: string; epoch: number; lastContactMsAgo: number };
}

export interface SyncRecord {
  epoch: number;
  /** Replicas that were in sync: each holds every acknowledged write. */
  standbys: string[];
  degraded: boolean;
  since: string;
}

export interface ClusterStatus {
  cluster: string;
  configCenter: string;
  primary?: PrimaryRecord;
  sync?: SyncRecord;
  nodes: NodeView[];
}

export interface WatchOutcome {
  kind: 'failed' | 'rest';
  failedNode?: string;
  /** Epoch ms of the first failed probe of the run that declared the failure. */
  firstFailureAt?: number;
  declaredAt?: number;
  evidence?: string;
}

export const primaryKey = (cluster: string) => `/services/${cluster}/primary`;
const epochKey = (cluster: string) => `/services/${cluster}/epoch`;
const syncKey = (cluster: string) => `/services/${cluster}/sync`;

/** A node that does not answer /health within this is counted as a failed probe. */
const PROBE_TIMEOUT_MS = 800;

export async function probeNode(node: { id: string; url: string }, timeoutMs = PROBE_TIMEOUT_MS): Promise<NodeView> {
  try {
    const res = await fetch(new URL('/health', node.url), { signal: AbortSignal.timeout(timeoutMs) });
    const body = (await res.json()) as Omit<NodeView, 'id' | 'url' | 'reachable'>;
    if (!res.ok) return { id: node.id, url: node.url, reachable: false, error: `HTTP ${res.status}` };
    return { ...body, id: node.id, url: node.url, reachable: true };
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name;
    return { id: node.id, url: node.url, reachable: false, error: cause };
  }
}

/** The typed client of a configured node, with failover's short timeouts. */
const clientOf = (node: { id: string; url: string }, timeoutMs = 5_000) => new NodeClient(node.id, node.url, timeoutMs);

/** Which nodes replicate synchronously: the first `count` healthy ones in config order. */
export function replicaSpecs(
  db: DatabaseConfig,
  primaryId: string,
  healthy: ReadonlySet<string>,
  count: number,
): Array<{ id: string; url: string; mode: 'sync' | 'async' }> {
  const others = db.nodes.filter((n) => n.id !== primaryId);
  const ordered = [...others.filter((n) => healthy.has(n.id)), ...others.filter((n) => !healthy.has(n.id))];
  return ordered.map((n, i) => ({ id: n.id, url: n.url, mode: i < count ? 'sync' : 'async' }));
}

/**
 * The candidate a failover may promote, or why none: it must hold every acknowledged write. A
 * synchronous standby recorded in the config center holds them all; any replica at or beyond a
 * reachable standby's LSN does too. Degraded (the primary acknowledged alone): none can be proven.
 */
export function electCandidate(
  views: readonly NodeView[],
  failedNode: string,
  sync: SyncRecord | undefined,
): { node: string; lsn: number; why: string } | { refused: string } {
  const replicas = views.filter((v) => v.id !== failedNode && v.reachable && v.role === 'replica');
  if (replicas.length === 0) {
    const seen = views
      .filter((v) => v.id !== failedNode)
      .map((v) => `${v.id}: ${v.reachable ? `${v.role}` : `unreachable (${v.error})`}`);
    return { refused: `no healthy replica to promote (${seen.join('; ') || 'the cluster has no other node'})` };
  }
  if (sync?.degraded) {
    return {
      refused:
        `the primary was acknowledging writes without a synchronous replica since ${sync.since}; ` +
        'no replica can be shown to hold every acknowledged write (pass force: true to promote the most advanced one anyway)',
    };
  }
  const standbys = sync ? replicas.filter((r) => sync.standbys.includes(r.id)) : replicas;
  if (standbys.length === 0) {
    return {
      refused: `the synchronous standby(s) ${sync!.standbys.join(', ')} holding every acknowledged write are unreachable`,
    };
  }
  const required = Math.max(...standbys.map((s) => s.lsn ?? 0));
  const eligible = replicas.filter((r) => (r.lsn ?? 0) >= required);
  eligible.sort((a, b) => (b.lsn ?? 0) - (a.lsn ?? 0) || Number(standbys.includes(b)) - Number(standbys.includes(a)));
  const chosen = eligible[0]!;
  return {
    node: chosen.id,
    lsn: chosen.lsn ?? 0,
    why: `highest applied LSN ${chosen.lsn} among replicas holding every acknowledged write (≥ LSN ${required})`,
  };
}

export function createClusterActivities({ config, metrics }: ActivityDeps) {
  let center: ConfigCenter | undefined;
  const cc = () => (center ??= openConfigCenter(config.cluster.configCenter));

  function clusterOf(name?: string): DatabaseConfig {
    const multi = config.databases.filter((d) => d.nodes.length > 1);
    const db = name ? config.databases.find((d) => d.name === name) : (multi[0] ?? config.databases[0]);
    if (!db) {
      const known = config.databases.map((d) => d.name).join(', ');
      throw new InputProblem('cluster', `unknown cluster "${name}"; the clusters are: ${known}`);
    }
    return db;
  }

  function nodeOf(db: DatabaseConfig, id: string, field = 'node'): NodeConfig {
    const node = db.nodes.find((n) => n.id === id);
    if (!node) {
      throw new InputProblem(
        field,
        `unknown node "${id}" in cluster ${db.name}; its nodes are: ${db.nodes.map((n) => n.id).join(', ')}`,
      );
    }
    return node;
  }

  async function readSync(cluster: string): Promise<{ value?: SyncRecord; revision: string }> {
    const { value, revision } = await cc().get(syncKey(cluster));
    return { value: value as SyncRecord | undefined, revision };
  }

  async function writeSync(cluster: string, next: SyncRecord): Promise<void> {
    for (let i = 0; i < 10; i++) {
      const { revision } = await readSync(cluster);
      if ((await cc().compareAndSwap(syncKey(cluster), revision, next)).ok) return;
    }
    throw new Unavailable(`the sync record of ${cluster} kept changing under 10 attempts to write it`);
  }

  async function status(input: { cluster?: string }): Promise<ClusterStatus> {
    const db = clusterOf(input.cluster);
    const [nodes, primary, sync] = await Promise.all([
      Promise.all(db.nodes.map((n) => probeNode(n, 2_000))),
      readPrimary(cc(), primaryKey(db.name)).catch(() => ({ record: undefined })),
      readSync(db.name).catch(() => ({ value: undefined })),
    ]);
    return { cluster: db.name, configCenter: cc().describe, primary: primary.record, sync: sync.value, nodes };
  }

  /** Validates a failover/switchover request against the config; returns the cluster's name. */
  async function resolveCluster(input: { cluster?: string; nodes?: Array<{ id: string; field: string }> }) {
    const db = clusterOf(input.cluster);
    for (const n of input.nodes ?? []) nodeOf(db, n.id, n.field);
    if (db.nodes.length < 2) {
      throw new InputProblem(
        'cluster',
        `cluster ${db.name} has one node (${db.nodes[0]!.id}): there is nothing to fail over to`,
      );
    }
    return { cluster: db.name, webhooks: config.cluster.webhooks.length };
  }

  /** Probes the node a few times; down only when none of the probes succeeds. */
  async function confirmFailure(input: {
    cluster: string;
    node: string;
  }): Promise<{ down: boolean; detail: string; notPrimary?: boolean }> {
    const node = nodeOf(clusterOf(input.cluster), input.node, 'failedNode');
    const { record } = await readPrimary(cc(), primaryKey(input.cluster));
    if (record && record.node !== node.id) {
      return {
        down: false,
        notPrimary: true,
        detail: `node ${node.id} is not the primary: the config center names ${record.node} (epoch ${record.epoch}); only the primary fails over`,
      };
    }
    const views: NodeView[] = [];
    for (let i = 0; i < 3; i++) {
      const v = await probeNode(node, 500);
      views.push(v);
      if (v.reachable && v.role === 'primary') {
        return { down: false, detail: `node ${node.id} answers: ${v.role}, epoch ${v.epoch}, LSN ${v.lsn}` };
      }
      if (v.reachable) return { down: true, detail: `node ${node.id} answers but is ${v.role}, not primary` };
      await sleep(150);
    }
    return { down: true, detail: `node ${node.id} did not answer 3 probes: ${views.map((v) => v.error).join(', ')}` };
  }

  /**
   * Fencing step 1: bump the cluster epoch by CAS. Only one failover can win a given epoch;
   * a retry of the same failover finds its own bump and reuses it. Waits (retries) while the
   * config center is unreachable: nothing is promoted without this CAS.
   */
  async function fenceEpoch(input: {
    cluster: string;
    by: string;
  }): Promise<{ epoch: number; previous?: PrimaryRecord }> {
    const { record } = await readPrimary(cc(), primaryKey(input.cluster));
    for (let i = 0; i < 10; i++) {
      const { value, revision } = await cc().get(epochKey(input.cluster));
      const stored = value as { epoch: number; by: string } | undefined;
      if (stored?.by === input.by) return { epoch: stored.epoch, previous: record };
      const current = Math.max(stored?.epoch ?? 0, record?.epoch ?? 1);
      const next = { epoch: current + 1, by: input.by, at: new Date().toISOString() };
      if ((await cc().compareAndSwap(epochKey(input.cluster), revision, next)).ok) {
        return { epoch: next.epoch, previous: record };
      }
    }
    throw new Unavailable(`the epoch of ${input.cluster} kept changing under 10 attempts to bump it`);
  }

  /** Fencing step 2: tell the old primary to step down, if it answers at all. */
  async function stepDown(input: {
    cluster: string;
    node: string;
    epoch: number;
  }): Promise<{ answered: boolean; detail: string }> {
    const node = nodeOf(clusterOf(input.cluster), input.node);
    try {
      const r = await clientOf(node, 1_000).demote({ epoch: input.epoch });
      return { answered: true, detail: `node ${node.id} is now ${r.role}` };
    } catch (err) {
      return { answered: false, detail: (err as Error).message };
    }
  }

  async function elect(input: { cluster: string; failedNode: string; force?: boolean }) {
    const db = clusterOf(input.cluster);
    const views = await Promise.all(db.nodes.map((n) => probeNode(n, 2_000)));
    const { value: sync } = await readSync(db.name);
    const choice = electCandidate(views, input.failedNode, input.force ? undefined : sync);
    if ('refused' in choice)
      throw new InputProblem('failedNode', `no eligible replica: ${choice.refused}; nothing was promoted`);
    return choice;
  }

  async function promote(input: { cluster: string; node: string; epoch: number; exclude?: string }) {
    const db = clusterOf(input.cluster);
    const node = nodeOf(db, input.node);
    const views = await Promise.all(db.nodes.map((n) => probeNode(n, 1_000)));
    const healthy = new Set(views.filter((v) => v.reachable && v.id !== input.exclude).map((v) => v.id));
    const replicas = replicaSpecs(db, node.id, healthy, config.cluster.syncReplicas);
    const degrade = config.cluster.whenSyncReplicaDown === 'degrade';
    const syncUp = replicas.some((r) => r.mode === 'sync' && healthy.has(r.id));
    if (degrade && !syncUp && replicas.length > 0) {
      // Record first: a failover meanwhile must know this primary may acknowledge alone.
      await writeSync(db.name, { epoch: input.epoch, standbys: [], degraded: true, since: new Date().toISOString() });
    }
    const answer = await clientOf(node).promote({ epoch: input.epoch, replicas, allowDegraded: degrade && !syncUp });
    return { node: node.id, url: node.url, lsn: answer.lsn, replicas };
  }

  /** The new primary record, CAS on the epoch the fence started from. */
  async function publishPrimary(input: { cluster: string; expectedEpoch?: number; record: PrimaryRecord }) {
    const result = await casPrimary(cc(), input.expectedEpoch, input.record, primaryKey(input.cluster));
    if (!result.ok) {
      throw new InputProblem('epoch', `the config center refused the new primary: ${result.reason}`);
    }
    metrics.clusterEpoch.set({ database: input.cluster }, input.record.epoch);
  }

  async function notifyWebhook(input: { index: number; event: PrimaryChangeEvent }) {
    const target = config.cluster.webhooks[input.index];
    if (!target) throw new InputProblem('index', `no webhook ${input.index}`);
    return deliverWebhook(target, { ...input.event, deliveryId: `${input.event.deliveryId}-${input.index}` });
  }

  /**
   * monitorCluster's eyes: probes every node each interval until the primary has failed
   * `failureThreshold` probes in a row AND a replica agrees (it has not heard from the primary for
   * `replicaSilence`). Meanwhile keeps the sync record true and degrades per the policy.
   * Returns 'rest' after about ten minutes so the workflow can continue as new.
   */
  async function watchCluster(input: { cluster: string }): Promise<WatchOutcome> {
    const ctx = Context.current();
    const db = clusterOf(input.cluster);
    const interval = config.cluster.probeInterval;
    const until = Date.now() + 10 * 60_000;
    let failures = 0;
    let firstFailureAt: number | undefined;
    let waitingSince: number | undefined;
    while (Date.now() < until && !ctx.cancellationSignal.aborted) {
      const started = Date.now();
      const views = await Promise.all(db.nodes.map((n) => probeNode(n, Math.min(PROBE_TIMEOUT_MS, interval))));
      let record: PrimaryRecord | undefined;
      try {
        record = (await readPrimary(cc(), primaryKey(db.name))).record;
        if (!record) record = await bootstrapRecord(db, views);
      } catch (err) {
        ctx.heartbeat({ waiting: `config center: ${(err as Error).message}` });
      }
      const primary = record && views.find((v) => v.id === record.node);
      if (primary && record) {
        const ok = primary.reachable && primary.role === 'primary';
        if (ok) {
          failures = 0;
          firstFailureAt = undefined;
          observe(db, primary);
          waitingSince = await keepSyncRecord(db.name, record, primary, waitingSince);
        } else {
          failures++;
          firstFailureAt ??= started;
          if (failures >= config.cluster.failureThreshold) {
            const witness = views.find(
              (v) =>
                v.reachable &&
                v.role === 'replica' &&
                (!v.primary ||
                  v.primary.id !== record.node ||
                  v.primary.lastContactMsAgo >= config.cluster.replicaSilence),
            );
            if (witness) {
              return {
                kind: 'failed',
                failedNode: record.node,
                firstFailureAt,
                declaredAt: Date.now(),
                evidence:
                  `${failures} consecutive probes of ${record.node} failed (${primary.error ?? primary.role}); ` +
                  `replica ${witness.id} last heard from it ${witness.primary ? `${witness.primary.lastContactMsAgo} ms ago` : 'never'}`,
              };
            }
          }
        }
      }
      ctx.heartbeat({ primary: record?.node, failures });
      await sleep(Math.max(0, interval - (Date.now() - started)));
    }
    return { kind: 'rest' };
  }

  function observe(db: DatabaseConfig, primary: NodeView): void {
    for (const r of primary.replicas ?? []) {
      const labels = { database: db.name, replica: r.id, mode: r.mode };
      if (r.lagLsn !== null) metrics.replicationLagLsn.set(labels, r.lagLsn);
      if (r.lastAckMsAgo !== null) metrics.replicationLastAck.set(labels, r.lastAckMsAgo / 1000);
    }
    if (primary.epoch) metrics.clusterEpoch.set({ database: db.name }, primary.epoch);
  }

  /** First sight of a cluster: the node that reports itself primary with the highest epoch. */
  async function bootstrapRecord(db: DatabaseConfig, views: NodeView[]): Promise<PrimaryRecord | undefined> {
    const primaries = views
      .filter((v) => v.reachable && v.role === 'primary')
      .sort((a, b) => (b.epoch ?? 0) - (a.epoch ?? 0));
    const p = primaries[0];
    if (!p) return undefined;
    const record = { node: p.id, url: p.url, epoch: p.epoch ?? 1, since: new Date().toISOString() };
    const result = await casPrimary(cc(), undefined, record, primaryKey(db.name));
    return result.ok ? record : result.current;
  }

  /**
   * The sync record follows the primary: standbys = its in-sync synchronous replicas. Under the
   * "degrade" policy, a primary without one for `degradeAfter` is allowed to acknowledge alone,
   * recorded here first. Returns since when the primary has been waiting.
   */
  async function keepSyncRecord(
    cluster: string,
    record: PrimaryRecord,
    primary: NodeView,
    waitingSince: number | undefined,
  ): Promise<number | undefined> {
    const inSync = (primary.replicas ?? []).filter((r) => r.mode === 'sync' && r.state === 'in-sync').map((r) => r.id);
    const { value: sync } = await readSync(cluster);
    if (inSync.length > 0) {
      const same = sync && !sync.degraded && sync.epoch === record.epoch && sync.standbys.join() === inSync.join();
      if (!same)
        await writeSync(cluster, {
          epoch: record.epoch,
          standbys: inSync,
          degraded: false,
          since: new Date().toISOString(),
        });
      if (primary.allowDegraded) await clientOf(primary).setReplication({ epoch: record.epoch, allowDegraded: false });
      return undefined;
    }
    if (primary.syncState !== 'waiting') return undefined;
    const since = waitingSince ?? Date.now();
    if (config.cluster.whenSyncReplicaDown === 'degrade' && Date.now() - since >= config.cluster.degradeAfter) {
      await writeSync(cluster, { epoch: record.epoch, standbys: [], degraded: true, since: new Date().toISOString() });
      await clientOf(primary).setReplication({ epoch: record.epoch, allowDegraded: true });
    }
    return since;
  }

  /** recoverNode: waits (heartbeating what it sees) until the node answers at all. */
  async function awaitNode(input: { cluster: string; node: string }): Promise<NodeView> {
    const ctx = Context.current();
    const node = nodeOf(clusterOf(input.cluster), input.node);
    for (;;) {
      const view = await probeNode(node, 2_000);
      if (view.reachable) return view;
      ctx.heartbeat({ waiting: `node ${node.id} at ${node.url}: ${view.error}` });
      await ctx.sleep(1_000);
    }
  }

  /** Rejoins a node as replica of the recorded primary, and has the primary send to it. */
  async function rejoinNode(input: { cluster: string; node: string }) {
    const db = clusterOf(input.cluster);
    const node = nodeOf(db, input.node);
    const { record } = await readPrimary(cc(), primaryKey(db.name));
    if (!record) throw new Unavailable(`no primary is recorded for ${db.name} yet`);
    if (record.node === node.id) return { epoch: record.epoch, role: 'primary' };
    const primaryNode = nodeOf(db, record.node);
    await clientOf(node).demote({ epoch: record.epoch, primary: { id: primaryNode.id, url: primaryNode.url } });
    const views = await Promise.all(db.nodes.map((n) => probeNode(n, 1_000)));
    const healthy = new Set(views.filter((v) => v.reachable).map((v) => v.id));
    const replicas = replicaSpecs(db, primaryNode.id, healthy, config.cluster.syncReplicas);
    await clientOf(primaryNode).setReplication({ epoch: record.epoch, replicas });
    return { epoch: record.epoch, role: 'replica' };
  }

  /** Resolves once the primary reports the node in sync (heartbeats the lag meanwhile). */
  async function awaitInSync(input: { cluster: string; node: string }): Promise<{ lsn: number }> {
    const ctx = Context.current();
    const db = clusterOf(input.cluster);
    for (;;) {
      const { record } = await readPrimary(cc(), primaryKey(db.name));
      const primary = record && (await probeNode(nodeOf(db, record.node), 2_000));
      const link = primary?.replicas?.find((r) => r.id === input.node);
      if (link?.state === 'in-sync') return { lsn: link.appliedLsn ?? 0 };
      ctx.heartbeat({ state: link?.state ?? 'unknown', lagLsn: link?.lagLsn ?? null });
      await ctx.sleep(500);
    }
  }

  /** switchover: waits until the target replica has everything the old primary committed. */
  async function awaitCaughtUp(input: { cluster: string; node: string; lsn: number }): Promise<{ lsn: number }> {
    const ctx = Context.current();
    const node = nodeOf(clusterOf(input.cluster), input.node);
    for (;;) {
      const v = await probeNode(node, 2_000);
      if (v.reachable && (v.lsn ?? 0) >= input.lsn) return { lsn: v.lsn ?? 0 };
      ctx.heartbeat({ lsn: v.lsn, want: input.lsn });
      await ctx.sleep(50);
    }
  }

  /** switchover: the current primary stops taking writes once what it committed is replicated. */
  async function drainPrimary(input: { cluster: string; node: string; epoch: number; to: string }) {
    const db = clusterOf(input.cluster);
    const node = nodeOf(db, input.node);
    const target = nodeOf(db, input.to);
    return clientOf(node).demote(
      { epoch: input.epoch, primary: { id: target.id, url: target.url }, drainMs: 10_000 },
      20_000,
    );
  }

  async function recordFailover(input: { cluster: string; kind: 'failover' | 'switchover'; rtoSeconds: number }) {
    metrics.failovers.inc({ database: input.cluster, kind: input.kind });
    metrics.failoverRtoSeconds.set({ database: input.cluster }, input.rtoSeconds);
    // The plan's rto_seconds: the last recovery of the database, a restore's or a failover's.
    if (input.kind === 'failover') metrics.rtoSeconds.set({ database: input.cluster }, input.rtoSeconds);
  }

  return {
    clusterStatus: status,
    resolveCluster,
    confirmFailure,
    fenceEpoch,
    stepDown,
    electReplica: elect,
    promoteNode: promote,
    publishPrimary,
    notifyWebhook,
    watchCluster,
    awaitNode,
    rejoinNode,
    awaitInSync,
    awaitCaughtUp,
    drainPrimary,
    recordFailover,
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
