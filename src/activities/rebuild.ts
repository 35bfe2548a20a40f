/**
 * Activities that rebuild a node from the primary and restore a replicated cluster (docs/
 * architecture.md, rules 6, 10 and 11). They run on the control queue: nodes are reached over
 * HTTP, and a rebuild moves bytes from the primary to the node directly (the primary sends a
 * consistent snapshot; the node checks it against the primary's fingerprint, moves its own file
 * aside and swaps the snapshot in), never through Temporal.
 */
import { Context } from '@temporalio/activity';
import type { Config, DatabaseConfig, NodeConfig } from '../config';
import { type ConfigCenter, openConfigCenter, readPrimary } from '../config-center';
import { InputProblem, Unavailable } from '../errors';
import { NodeClient } from '../node-client';
import type { ClusterFacts } from '../restore/cluster-plan';
import type { Stores } from '../storage/stores';
import { REBUILD_STATES } from '../failover/node-states';
import { joinSpecs } from '../failover/placement';
import { type NodeView, type SyncRecord, primaryKey, probeNode, syncKey } from './cluster';

export function createRebuildActivities({ config, stores }: { config: Config; stores: Stores }) {
  let center: ConfigCenter | undefined;
  const cc = () => (center ??= openConfigCenter(config.cluster.configCenter));
  const client = (node: NodeConfig, timeoutMs = 5_000) =>
    new NodeClient(node.id, node.url, config.nodeAuth.token, timeoutMs);

  function nodeOf(db: DatabaseConfig, id: string): NodeConfig {
    const node = db.nodes.find((n) => n.id === id);
    if (!node) {
      throw new InputProblem('node', `unknown node "${id}" in ${db.name}; its nodes are ${db.nodes.map((n) => n.id)}`);
    }
    return node;
  }

  async function recordedPrimary(db: DatabaseConfig) {
    const { record } = await readPrimary(cc(), primaryKey(db.name));
    if (!record) throw new Unavailable(`no primary is recorded for ${db.name} yet`);
    return { record, node: nodeOf(db, record.node) };
  }

  /** What a cluster restore decides on: every node's health, and the primary and sync records. */
  async function clusterFacts(input: { cluster: string }): Promise<ClusterFacts & { views: NodeView[] }> {
    const db = stores.database(input.cluster);
    const [views, primary, sync] = await Promise.all([
      Promise.all(db.nodes.map((n) => probeNode(n, 2_000))),
      readPrimary(cc(), primaryKey(db.name)).then((r) => r.record),
      cc()
        .get(syncKey(db.name))
        .then((v) => v.value as SyncRecord | undefined),
    ]);
    return {
      views,
      nodes: views.map((v) => ({
        id: v.id,
        reachable: v.reachable,
        ...(v.status === undefined ? {} : { status: v.status }),
        ...(v.role === undefined ? {} : { role: v.role }),
        ...(v.epoch === undefined ? {} : { epoch: v.epoch }),
        ...(v.lsn === undefined ? {} : { lsn: v.lsn }),
        ...(v.ackedLsn === undefined ? {} : { ackedLsn: v.ackedLsn }),
      })),
      ...(primary ? { primary: { node: primary.node, epoch: primary.epoch } } : {}),
      ...(sync ? { sync: { epoch: sync.epoch, standbys: sync.standbys, degraded: sync.degraded } } : {}),
    };
  }

  /**
   * Has the recorded primary send the node a consistent snapshot of itself (the node moves its
   * own file aside, never deletes it). A node that still answers as something else is first told
   * to follow the primary. Returns how many snapshots the primary had sent it before, so that
   * awaitRebuilt can tell the new one from an old one.
   */
  async function rebuildNode(input: {
    cluster: string;
    node: string;
  }): Promise<{ epoch: number; primary: string; before: number }> {
    const db = stores.database(input.cluster);
    const target = nodeOf(db, input.node);
    const { record, node: primary } = await recordedPrimary(db);
    if (record.node === target.id) {
      throw new InputProblem('node', `${target.id} is the primary of ${db.name}: fail over before rebuilding it`);
    }
    const view = await probeNode(target, 2_000);
    if (view.reachable && !REBUILD_STATES.includes(view.status ?? '') && view.role !== 'replica') {
      await client(target).demote({ epoch: record.epoch, primary: { id: primary.id, url: primary.url } });
    }
    const views = await Promise.all(db.nodes.map((n) => probeNode(n, 1_000)));
    const primaryView = views.find((v) => v.id === primary.id);
    const before = primaryView?.replicas?.find((r) => r.id === target.id)?.bootstraps ?? 0;
    const healthy = new Set(views.filter((v) => v.reachable && v.id !== target.id).map((v) => v.id));
    // The node being rebuilt joins as asynchronous unless it holds the synchronous role already.
    const replicas = joinSpecs(
      db.nodes,
      primary.id,
      primaryView?.replicas ?? [],
      healthy,
      config.cluster.syncReplicas,
      config.cluster.syncPlacement,
    );
    await client(primary).setReplication({ epoch: record.epoch, replicas, bootstrap: [target.id] });
    return { epoch: record.epoch, primary: primary.id, before };
  }

  /**
   * Resolves once the primary has sent the node a new snapshot and the node is in sync after it.
   * When another primary took over meanwhile (its snapshot counts start again), once the node is
   * healthy and in sync with it: a damaged or empty node cannot be in sync without a new file.
   */
  async function awaitRebuilt(input: {
    cluster: string;
    node: string;
    before: number;
    primary?: string;
  }): Promise<{ lsn: number }> {
    const ctx = Context.current();
    const db = stores.database(input.cluster);
    const target = nodeOf(db, input.node);
    for (;;) {
      const { node: primary } = await recordedPrimary(db);
      // Promoted meanwhile (another failover chose it, so it had the data): nothing left to wait for.
      if (primary.id === input.node) return { lsn: (await probeNode(primary, 2_000)).lsn ?? 0 };
      const view = await probeNode(primary, 2_000);
      const link = view.replicas?.find((r) => r.id === input.node);
      const moved = input.primary !== undefined && input.primary !== primary.id;
      const fresh = (link?.bootstraps ?? 0) > input.before;
      if (link && link.state === 'in-sync' && (fresh || (moved && (await probeNode(target, 2_000)).status === 'ok'))) {
        return { lsn: link.appliedLsn ?? 0 };
      }
      ctx.heartbeat({ state: link?.state ?? 'unknown', bootstraps: link?.bootstraps ?? 0, error: link?.lastError });
      await ctx.sleep(500);
    }
  }

  /**
   * A single node restored in place starts a new history: it becomes primary of the next epoch,
   * which begins at `forkLsn`, so the archive names the new history's segments apart from the
   * abandoned ones. Idempotent: a node already at a newer epoch than `fromEpoch` is left alone.
   */
  async function openEpoch(input: {
    database: string;
    node: string;
    fromEpoch: number;
    forkLsn: number;
  }): Promise<{ epoch: number }> {
    const node = nodeOf(stores.database(input.database), input.node);
    const health = await client(node).health();
    if (health.epoch > input.fromEpoch) return { epoch: health.epoch };
    const epoch = input.fromEpoch + 1;
    await client(node).promote({ epoch, replicas: [], allowDegraded: false, startLsn: input.forkLsn });
    return { epoch };
  }

  /** The node's epoch now (a restore notes it before the swap). */
  async function nodeEpoch(input: { database: string; node: string }): Promise<{ epoch: number }> {
    const node = nodeOf(stores.database(input.database), input.node);
    return { epoch: (await client(node).health()).epoch };
  }

  return { clusterFacts, rebuildNode, awaitRebuilt, openEpoch, nodeEpoch };
}
