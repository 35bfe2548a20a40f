/**
 * Activities of failover, switchover, recoverNode and monitorCluster: probing nodes, the config
 * center (epoch CAS, the primary record, the synchronous-standby record), promotion, demotion and
 * client notifications. They run on the control queue: nodes are reached over HTTP.
 *
 * Keys in the config center, per cluster (a database with several nodes):
 *   /services/<cluster>/primary  { node, url, epoch, since, failover? }  what clients follow
 *   /services/<cluster>/epoch    { epoch, by, at }                       bumped by CAS to fence
 *   /services/<cluster>/sync     { epoch, standbys, zones?, placement?, degraded, since }
 *                                 who holds every acknowledged write, in which zone (other-zone,
 *                                 or the same-zone fallback); degraded: the primary acknowledges alone
 */
import { Context } from '@temporalio/activity';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/client';
import { FAILOVER_TASK_TIMEOUT, failoverWorkflowId } from '../failover/input';
import { type DatabaseConfig, homeRegion, nodeTaskQueue } from '../config';
import { type ConfigCenter, type PrimaryRecord, casPrimary, openConfigCenter, readPrimary } from '../config-center';
import { type TopologyLease, readLease } from '../config-center/lease';
import { InputProblem, PublishRefused, Unavailable } from '../errors';
import { NodeClient } from '../node-client';
import { clusterOfConfig, nodeOf } from '../cluster';
import { type PrimaryChangeEvent, deliverWebhook } from '../notify/webhook';
import { BUSY_STATES, FAILED_PRIMARY_STATES, REBUILD_STATES } from '../failover/node-states';
import {
  type StandbyPlacement,
  decideStandbySwitch,
  joinSpecs,
  regionElsewhere,
  sameRegion,
  sentryNodes,
  placementOf,
  replicaSpecs,
  zonesOf,
} from '../failover/placement';
import type { ActivityDeps } from './index';

/** What a node's GET /health says about replication (docs/node-api.md). */
export interface NodeView {
  id: string;
  url: string;
  /** From the config (cluster status only). */
  zone?: string;
  region?: string;
  reachable: boolean;
  error?: string;
  /** ok, maintenance, damaged, unwritable or empty (docs/node-api.md, /health). */
  status?: string;
  role?: string;
  epoch?: number;
  lsn?: number;
  /** The highest LSN the node knows to be acknowledged. */
  ackedLsn?: number;
  /** Why a damaged or unwritable node is so. */
  damage?: { reason: string; detectedBy: string; at: string };
  syncState?: string;
  allowDegraded?: boolean;
  replicas?: Array<{
    id: string;
    mode: string;
    state: string;
    appliedLsn: number | null;
    lagLsn: number | null;
    lastAckMsAgo: number | null;
    lastError?: string | null;
    /** Snapshots the primary sent this replica (rebuilds). */
    bootstraps?: number;
  }>;
  primary?: { id: string; url: string; epoch: number; lastContactMsAgo: number };
}

export interface SyncRecord {
  epoch: number;
  /** Replicas that were in sync: each holds every acknowledged write. */
  standbys: string[];
  /** The zone of each standby, when nodes have zones. */
  zones?: Record<string, string>;
  /** other-zone, or same-zone: the fallback taken while no node of another zone is in sync. */
  placement?: StandbyPlacement;
  /** The synchronous role is moving (no standby is promised until the new one is proven). */
  switching?: { from: string[]; to: string[]; why: string };
  degraded: boolean;
  /** Why the primary acknowledges alone when that was decided, not waited into (a region failover). */
  why?: string;
  since: string;
}

export interface ClusterStatus {
  cluster: string;
  configCenter: string;
  primary?: PrimaryRecord;
  sync?: SyncRecord;
  /** The topology lease as stored: who holds it (or held it last), for what, until when. */
  lease?: TopologyLease;
  nodes: NodeView[];
}

/** watchCluster's heartbeat: what the monitor saw at its latest probe round (tests read it). */
export interface WatchProgress {
  primary?: string;
  /** Consecutive failed probes of the primary. */
  failures: number;
  /** Probe rounds since this watch started. */
  probes: number;
}

export interface WatchOutcome {
  /**
   * failed: the primary must be failed over; recover: these nodes need recoverNode; rest: continue
   * as new; elsewhere: the primary is in another region than this worker's (the cluster is run
   * from there), so this region's monitor stands down.
   */
  kind: 'failed' | 'recover' | 'rest' | 'elsewhere';
  failedNode?: string;
  /** recover: reachable nodes that are not the primary and are damaged, empty or fenced. */
  nodes?: string[];
  /** Epoch ms of the first failed probe of the run that declared the failure. */
  firstFailureAt?: number;
  declaredAt?: number;
  evidence?: string;
  /** failed: the failover the watch started (or found running), to wait for. */
  failover?: { workflowId: string; runId?: string };
}

export const primaryKey = (cluster: string) => `/services/${cluster}/primary`;

const epochKey = (cluster: string) => `/services/${cluster}/epoch`;
export const syncKey = (cluster: string) => `/services/${cluster}/sync`;

/** A node that does not answer /health within this is counted as a failed probe. */
const PROBE_TIMEOUT_MS = 800;
/**
 * Failover phases that do not need the failed node ask the others with this first: a healthy
 * node answers /health in milliseconds, and one frozen with its zone must not cost a long timeout.
 */
const QUICK_PROBE_MS = 400;

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

/**
 * The candidate a failover may promote, or why none: it must hold every acknowledged write. The
 * sync record of the failed primary's epoch names the standbys that were shown to hold them all;
 * any replica at or beyond a reachable standby's LSN does too. Degraded (the primary acknowledged
 * alone), no standby proven yet in this epoch, or a record of an older epoch: none can be shown.
 * `sync` undefined: no record was ever kept (a cluster without a monitor), or the failover is
 * forced; the most advanced replica is chosen.
 */
export function electCandidate(
  views: readonly NodeView[],
  failedNode: string,
  sync: SyncRecord | undefined,
  epoch?: number,
): { node: string; lsn: number; why: string } | { refused: string } {
  const replicas = views.filter((v) => v.id !== failedNode && v.reachable && v.role === 'replica');
  if (replicas.length === 0) {
    const seen = views
      .filter((v) => v.id !== failedNode)
      .map((v) => `${v.id}: ${v.reachable ? `${v.role}` : `unreachable (${v.error})`}`);
    return { refused: `no healthy replica to promote (${seen.join('; ') || 'the cluster has no other node'})` };
  }
  const force = ' (pass force: true to promote the most advanced one anyway)';
  if (sync?.degraded) {
    return {
      refused:
        `the primary was acknowledging writes without a synchronous replica since ${sync.since}; ` +
        `no replica can be shown to hold every acknowledged write${force}`,
    };
  }
  if (sync && epoch !== undefined && sync.epoch < epoch) {
    return {
      refused: `the sync record is of epoch ${sync.epoch}, older than the primary's epoch ${epoch}: no replica was shown to hold every write acknowledged since${force}`,
    };
  }
  if (sync && sync.standbys.length === 0) {
    return {
      refused: `no replica was shown yet to hold every write acknowledged in epoch ${sync.epoch} (since ${sync.since}); the monitor records one once it is in sync${force}`,
    };
  }
  const standbys = sync ? replicas.filter((r) => sync.standbys.includes(r.id)) : replicas;
  if (standbys.length === 0) {
    return {
      refused: `the synchronous standby(s) ${sync!.standbys.join(', ')} holding every acknowledged write are unreachable${force}`,
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

/** What the sync-record keeper remembers between probes of one watch. */
export interface SyncKeeperState {
  /** Since when the primary has been waiting for a synchronous replica (epoch ms). */
  waitingSince?: number;
  /**
   * The primary's head, seen after it stopped acknowledging alone (or after the standby set
   * changed): every acknowledged write has an LSN at or below it, so a standby that applied it
   * holds them all. `forStandbys` is the set it was taken for.
   */
  required?: number;
  forStandbys?: string;
}

export type SyncStep =
  | { kind: 'idle' }
  /** Tell the primary to stop acknowledging alone; the record changes only once a probe sees it did. */
  | { kind: 'stop-acknowledging-alone' }
  /** In-sync standbys exist but none is shown to hold every acknowledged write yet. */
  | { kind: 'await-proof'; required: number }
  | { kind: 'record'; standbys: string[] }
  /** Record "degraded" first, then allow the primary to acknowledge alone. */
  | { kind: 'degrade' };

/**
 * The sync record follows the primary (pure: every case is unit-tested). It may name a standby
 * only when the standby is shown to hold every acknowledged write: the primary must no longer
 * acknowledge alone (seen in a probe, not assumed from a call), and the standby must have applied
 * the primary's head as seen then. Leaving degraded mode in the other order would let the
 * record promise a standby that lacks writes the primary acknowledged alone meanwhile.
 */
export function decideSyncStep(input: {
  primary: NodeView;
  epoch: number;
  sync: SyncRecord | undefined;
  state: SyncKeeperState;
  now: number;
  policy: 'degrade' | 'block';
  degradeAfter: number;
}): { step: SyncStep; state: SyncKeeperState } {
  const { primary, sync, now } = input;
  const inSync = (primary.replicas ?? []).filter((r) => r.mode === 'sync' && r.state === 'in-sync');
  if (inSync.length > 0) {
    if (primary.allowDegraded) return { step: { kind: 'stop-acknowledging-alone' }, state: {} };
    const wanted = inSync.map((r) => r.id).join();
    if (sync && !sync.degraded && sync.epoch === input.epoch && sync.standbys.join() === wanted) {
      return { step: { kind: 'idle' }, state: {} };
    }
    const fresh = input.state.forStandbys === wanted && input.state.required !== undefined;
    const required = fresh ? input.state.required! : (primary.lsn ?? 0);
    const holders = inSync.filter((r) => (r.appliedLsn ?? -1) >= required).map((r) => r.id);
    if (holders.length === 0) {
      return { step: { kind: 'await-proof', required }, state: { required, forStandbys: wanted } };
    }
    return { step: { kind: 'record', standbys: holders }, state: {} };
  }
  if (primary.syncState !== 'waiting') return { step: { kind: 'idle' }, state: {} };
  const since = input.state.waitingSince ?? now;
  if (input.policy === 'degrade' && now - since >= input.degradeAfter) {
    return { step: { kind: 'degrade' }, state: { waitingSince: since } };
  }
  return { step: { kind: 'idle' }, state: { waitingSince: since } };
}

export function createClusterActivities({ config, metrics }: ActivityDeps) {
  /** The typed client of a configured node, with failover's short timeouts. */
  const clientOf = (node: { id: string; url: string }, timeoutMs = 5_000) =>
    new NodeClient(node.id, node.url, config.nodeAuth.token, timeoutMs);

  let center: ConfigCenter | undefined;
  const cc = () => (center ??= openConfigCenter(config.cluster.configCenter));

  const clusterOf = (name?: string) => clusterOfConfig(config, name);

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
    const [nodes, primary, sync, lease] = await Promise.all([
      Promise.all(
        db.nodes.map(async (n) => ({
          ...(await probeNode(n, 2_000)),
          ...(n.zone ? { zone: n.zone } : {}),
          ...(n.region ? { region: n.region } : {}),
        })),
      ),
      readPrimary(cc(), primaryKey(db.name)).catch(() => ({ record: undefined })),
      readSync(db.name).catch(() => ({ value: undefined })),
      readLease(cc(), db.name).catch(() => undefined),
    ]);
    return {
      cluster: db.name,
      configCenter: cc().describe,
      primary: primary.record,
      sync: sync.value,
      ...(lease ? { lease } : {}),
      nodes,
    };
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
    return {
      cluster: db.name,
      webhooks: config.cluster.webhooks.length,
      // The task queues the monitor's sentries run on (one per zone of this region; none without zones).
      sentries: sentryNodes(homeRegion(config), db.nodes).map((id) => nodeTaskQueue(config, nodeOf(db, id, 'node'))),
    };
  }

  /** Probes the node a few times; down only when none of the probes succeeds. */
  /**
   * `probes`: how many failed probes make it down (default 3). The monitor has already seen
   * `failureThreshold` in a row and a replica agree, so its failovers ask once: a frozen node
   * costs one probe timeout, not three.
   */
  async function confirmFailure(input: {
    cluster: string;
    node: string;
    probes?: number;
  }): Promise<{ down: boolean; detail: string; notPrimary?: boolean; epoch?: number; answered?: boolean }> {
    const node = nodeOf(clusterOf(input.cluster), input.node, 'failedNode');
    const { record } = await readPrimary(cc(), primaryKey(input.cluster));
    const confirm = (answer: { down: boolean; detail: string; answered?: boolean }) => ({
      answered: true,
      ...answer,
      ...(record ? { epoch: record.epoch } : {}),
    });
    if (record && record.node !== node.id) {
      return {
        down: false,
        notPrimary: true,
        detail: `node ${node.id} is not the primary: the config center names ${record.node} (epoch ${record.epoch}); only the primary fails over`,
      };
    }
    const views: NodeView[] = [];
    const probes = Math.max(1, input.probes ?? 3);
    for (let i = 0; i < probes; i++) {
      if (i > 0) await sleep(150);
      const v = await probeNode(node, 500);
      views.push(v);
      if (v.reachable && FAILED_PRIMARY_STATES.includes(v.status ?? '')) {
        return confirm({
          down: true,
          detail: `node ${node.id} answers but reports itself ${v.status}: ${v.damage?.reason ?? 'no reason given'}`,
        });
      }
      if (v.reachable && v.role === 'primary') {
        return confirm({ down: false, detail: `node ${node.id} answers: ${v.role}, epoch ${v.epoch}, LSN ${v.lsn}` });
      }
      if (v.reachable) return confirm({ down: true, detail: `node ${node.id} answers but is ${v.role}, not primary` });
    }
    return confirm({
      down: true,
      answered: false,
      detail: `node ${node.id} did not answer ${probes} probe(s): ${views.map((v) => v.error).join(', ')}`,
    });
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

  /**
   * The election never asks the failed node (it cannot be elected). The others are asked with a
   * short timeout first; only when that leaves no eligible candidate are the silent ones asked
   * again with a long one, so a node frozen with the failed one's zone costs little.
   */
  async function elect(input: { cluster: string; failedNode: string; force?: boolean }) {
    const db = clusterOf(input.cluster);
    // Within the failed primary's region: another region takes over only by failoverRegion.
    const failed = db.nodes.find((n) => n.id === input.failedNode);
    const others = db.nodes.filter((n) => n.id !== input.failedNode && sameRegion(failed, n));
    const [quick, { value: sync }, { record }] = await Promise.all([
      Promise.all(others.map((n) => probeNode(n, QUICK_PROBE_MS))),
      readSync(db.name),
      readPrimary(cc(), primaryKey(db.name)),
    ]);
    const decide = (views: NodeView[]) =>
      electCandidate(views, input.failedNode, input.force ? undefined : sync, record?.epoch);
    let choice = decide(quick);
    if ('refused' in choice && quick.some((v) => !v.reachable)) {
      const again = await Promise.all(
        others.map((n, i) => (quick[i]!.reachable ? Promise.resolve(quick[i]!) : probeNode(n, 2_000))),
      );
      choice = decide(again);
    }
    if ('refused' in choice)
      throw new InputProblem('failedNode', `no eligible replica: ${choice.refused}; nothing was promoted`);
    return { ...choice, url: nodeOf(db, choice.node).url };
  }

  /**
   * Makes the node primary of `epoch`. `forkLsn`: where the new epoch's history departs from the
   * old one when that is below the node's LSN (a restore that left batches out): a node without the
   * new epoch truncates to it when it rejoins.
   */
  /**
   * `alone`: the primary acknowledges without a synchronous standby from the start, recorded as
   * degraded with this reason (a region failover: the standby region has no second node in sync).
   */
  async function promote(input: {
    cluster: string;
    node: string;
    epoch: number;
    exclude?: string;
    forkLsn?: number;
    alone?: string;
  }) {
    const db = clusterOf(input.cluster);
    const node = nodeOf(db, input.node);
    // The failed node is not asked, and a node that does not answer at once (frozen with its
    // zone) is counted as down: the promotion must not wait out their timeouts.
    const views = await Promise.all(
      db.nodes.filter((n) => n.id !== input.exclude && n.id !== node.id).map((n) => probeNode(n, QUICK_PROBE_MS)),
    );
    const healthy = new Set(views.filter((v) => v.reachable).map((v) => v.id));
    const replicas = replicaSpecs(
      db.nodes,
      node.id,
      healthy,
      config.cluster.syncReplicas,
      config.cluster.syncPlacement,
    );
    const degrade = config.cluster.whenSyncReplicaDown === 'degrade';
    const syncUp = replicas.some((r) => r.mode === 'sync' && healthy.has(r.id));
    // Recorded before the promotion: in the new epoch no standby is proven to hold every
    // acknowledged write until the monitor has seen one in sync (decideSyncStep), and a primary
    // that may acknowledge alone is recorded as degraded before it does.
    const allowDegraded = (degrade && !syncUp && replicas.length > 0) || input.alone !== undefined;
    await writeSync(db.name, {
      epoch: input.epoch,
      standbys: [],
      degraded: allowDegraded,
      ...(input.alone ? { why: input.alone } : {}),
      since: new Date().toISOString(),
    });
    const answer = await clientOf(node).promote({
      epoch: input.epoch,
      replicas,
      allowDegraded,
      ...(input.forkLsn === undefined ? {} : { startLsn: input.forkLsn }),
    });
    return { node: node.id, url: node.url, lsn: answer.lsn, replicas };
  }

  /**
   * The new primary record, CAS on the epoch the fence started from. Refused: someone recorded
   * another primary meanwhile; `promoted` says whether the proposed node was promoted already
   * (a switchover or failover publishes first, so it was not).
   */
  async function publishPrimary(input: {
    cluster: string;
    expectedEpoch?: number;
    record: PrimaryRecord;
    promoted?: boolean;
  }) {
    const result = await casPrimary(cc(), input.expectedEpoch, input.record, primaryKey(input.cluster));
    if (!result.ok) {
      const current = result.current
        ? `; the config center names ${result.current.node} at epoch ${result.current.epoch}, which the cluster follows`
        : '';
      const promoted = input.promoted === false ? `; ${input.record.node} was not promoted` : '';
      throw new PublishRefused(
        `the config center refused ${input.record.node} as primary of epoch ${input.record.epoch}: ${result.reason}${promoted}${current}`,
      );
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
  /**
   * `recovering`: nodes a recovery was started for, not reported again until `until` (epoch ms).
   */
  /**
   * The monitor's watch. `sentry`: the watch reduced to failure detection, run on a node's queue in
   * every zone beside the main watch (sentryNodes): it reports only a failure (after starting the
   * failover) or that the cluster is run from another region, and leaves the sync record, metrics
   * and recoveries to the main watch.
   */
  async function watchCluster(input: {
    cluster: string;
    recovering?: Array<{ node: string; until: number }>;
    sentry?: boolean;
  }): Promise<WatchOutcome> {
    const ctx = Context.current();
    const db = clusterOf(input.cluster);
    const interval = config.cluster.probeInterval;
    const until = Date.now() + 10 * 60_000;
    let failures = 0;
    let probes = 0;
    let firstFailureAt: number | undefined;
    let syncState: SyncKeeperState = {};
    /** The primary record the failures were counted against: a new one starts the count again. */
    let counted: string | undefined;
    while (Date.now() < until && !ctx.cancellationSignal.aborted) {
      const started = Date.now();
      const views = await Promise.all(db.nodes.map((n) => probeNode(n, Math.min(PROBE_TIMEOUT_MS, interval))));
      let record: PrimaryRecord | undefined;
      try {
        record = (await readPrimary(cc(), primaryKey(db.name))).record;
        if (!record && !input.sentry) record = await bootstrapRecord(db, views);
      } catch (err) {
        ctx.heartbeat({ waiting: `config center: ${(err as Error).message}` });
      }
      const elsewhere = record && regionElsewhere(homeRegion(config), db, record);
      if (elsewhere) return { kind: 'elsewhere', evidence: elsewhere };
      if (record && `${record.node}@${record.epoch}` !== counted) {
        counted = `${record.node}@${record.epoch}`;
        failures = 0;
        firstFailureAt = undefined;
      }
      const primary = record && views.find((v) => v.id === record.node);
      if (primary && record) {
        const stray = views
          .filter(
            (v) =>
              v.id !== record.node &&
              v.reachable &&
              !input.recovering?.some((r) => r.node === v.id && r.until > Date.now()),
          )
          .filter((v) => REBUILD_STATES.includes(v.status ?? '') || v.role === 'fenced')
          .map((v) => v.id);
        if (stray.length > 0 && !input.sentry) return { kind: 'recover', nodes: stray };
        // A primary that reports its own file damaged or its writes failing has failed, whatever
        // its replicas still hear from it.
        const selfReported = primary.reachable && FAILED_PRIMARY_STATES.includes(primary.status ?? '');
        const ok = primary.reachable && primary.role === 'primary' && !selfReported;
        if (ok) {
          failures = 0;
          firstFailureAt = undefined;
          if (!input.sentry) {
            observe(db, primary);
            syncState = await keepSyncRecord(db.name, record, primary, syncState);
          }
        } else {
          failures++;
          firstFailureAt ??= started;
          if (failures >= config.cluster.failureThreshold && selfReported) {
            return startFailover(db.name, {
              kind: 'failed',
              failedNode: record.node,
              firstFailureAt,
              declaredAt: Date.now(),
              evidence: `${record.node} reports itself ${primary.status}: ${primary.damage?.reason ?? 'no reason given'} (${failures} probes in a row)`,
            });
          }
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
              return startFailover(db.name, {
                kind: 'failed',
                failedNode: record.node,
                firstFailureAt,
                declaredAt: Date.now(),
                evidence:
                  `${failures} consecutive probes of ${record.node} failed (${primary.error ?? primary.role}); ` +
                  `replica ${witness.id} last heard from it ${witness.primary ? `${witness.primary.lastContactMsAgo} ms ago` : 'never'}`,
              });
            }
          }
        }
      }
      probes++;
      ctx.heartbeat({ primary: record?.node, failures, probes } satisfies WatchProgress);
      await sleep(Math.max(0, interval - (Date.now() - started)));
    }
    return { kind: 'rest' };
  }

  /**
   * The watch starts the failover itself, from the worker that saw the failure: a workflow task of
   * the monitor would first have to reach a worker, and the one that holds the monitor in its cache
   * may be the one lost (with its zone) — a frozen worker even takes tasks it never answers. One
   * failover per cluster: one already running is waited for instead.
   */
  async function startFailover(cluster: string, outcome: WatchOutcome): Promise<WatchOutcome> {
    const workflowId = failoverWorkflowId(cluster);
    try {
      const handle = await Context.current().client.workflow.start('failover', {
        taskQueue: config.temporal.taskQueue,
        workflowId,
        args: [
          {
            cluster,
            failedNode: outcome.failedNode!,
            // Which watch saw it: the main one (control queue) or a zone's sentry (a node's queue).
            reason: `monitorCluster: primary failed (seen by the watch on ${Context.current().info.taskQueue})`,
            ...(outcome.firstFailureAt ? { detectedAt: outcome.firstFailureAt } : {}),
            ...(outcome.evidence ? { evidence: outcome.evidence } : {}),
          },
        ],
        workflowIdReusePolicy: 'ALLOW_DUPLICATE',
        workflowTaskTimeout: FAILOVER_TASK_TIMEOUT,
        // Its first workflow task handed straight to this worker (when the server offers eager
        // start): it cannot be taken by a worker that froze with its zone.
        requestEagerStart: true,
      });
      return { ...outcome, failover: { workflowId, runId: handle.firstExecutionRunId } };
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) return { ...outcome, failover: { workflowId } };
      throw err;
    }
  }

  /** The monitor waits for the failover its watch started; resolves with how it ended. */
  async function awaitFailover(input: {
    workflowId: string;
    runId?: string;
  }): Promise<{ ok: boolean; detail: string }> {
    const ctx = Context.current();
    const handle = ctx.client.workflow.getHandle(input.workflowId, input.runId);
    const beat = setInterval(() => ctx.heartbeat(), 500);
    try {
      await handle.result();
      return { ok: true, detail: 'completed' };
    } catch (err) {
      return { ok: false, detail: (err as Error).message };
    } finally {
      clearInterval(beat);
    }
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

  /** Applies decideSyncStep: the node call or the record write it asks for, in that order. */
  async function keepSyncRecord(
    cluster: string,
    record: PrimaryRecord,
    primary: NodeView,
    state: SyncKeeperState,
  ): Promise<SyncKeeperState> {
    const { value: sync } = await readSync(cluster);
    const db = clusterOf(cluster);
    const move = decideStandbySwitch({
      nodes: db.nodes,
      primaryId: primary.id,
      replicas: primary.replicas ?? [],
      count: config.cluster.syncReplicas,
      placement: config.cluster.syncPlacement,
    });
    if (move) {
      // First the record stops promising the old standby (it will lack what the new one
      // acknowledges), then the primary moves the role; the next probes prove the new standby
      // holds the head before the record names it.
      await writeSync(cluster, {
        epoch: record.epoch,
        standbys: [],
        switching: { from: move.from, to: move.to, why: move.why },
        degraded: sync?.epoch === record.epoch && sync.degraded,
        since: new Date().toISOString(),
      });
      await clientOf(primary).setReplication({ epoch: record.epoch, replicas: move.replicas });
      return {};
    }
    const decided = decideSyncStep({
      primary,
      epoch: record.epoch,
      sync,
      state,
      now: Date.now(),
      policy: config.cluster.whenSyncReplicaDown,
      degradeAfter: config.cluster.degradeAfter,
    });
    const step = decided.step;
    const since = new Date().toISOString();
    switch (step.kind) {
      case 'stop-acknowledging-alone':
        await clientOf(primary).setReplication({ epoch: record.epoch, allowDegraded: false });
        break;
      case 'record': {
        const zones = zonesOf(db.nodes, step.standbys);
        const placement = placementOf(db.nodes, primary.id, step.standbys);
        await writeSync(cluster, {
          epoch: record.epoch,
          standbys: step.standbys,
          ...(zones ? { zones } : {}),
          ...(placement ? { placement } : {}),
          degraded: false,
          since,
        });
        break;
      }
      case 'degrade':
        await writeSync(cluster, { epoch: record.epoch, standbys: [], degraded: true, since });
        await clientOf(primary).setReplication({ epoch: record.epoch, allowDegraded: true });
        break;
      default:
        break;
    }
    return decided.state;
  }

  /**
   * recoverNode: waits (heartbeating what it sees) until the node answers, and can take data: a
   * node whose writes fail (a full disk) reopens its file by itself once the cause is gone.
   */
  async function awaitNode(input: { cluster: string; node: string }): Promise<NodeView> {
    const ctx = Context.current();
    const node = nodeOf(clusterOf(input.cluster), input.node);
    for (;;) {
      const view = await probeNode(node, 2_000);
      if (view.reachable && !BUSY_STATES.includes(view.status ?? '')) return view;
      const why = view.reachable ? `${view.status}: ${view.damage?.reason ?? ''}` : view.error;
      ctx.heartbeat({ waiting: `node ${node.id} at ${node.url}: ${why}` });
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
    const current = views.find((v) => v.id === primaryNode.id)?.replicas ?? [];
    const replicas = joinSpecs(
      db.nodes,
      primaryNode.id,
      current,
      healthy,
      config.cluster.syncReplicas,
      config.cluster.syncPlacement,
    );
    await clientOf(primaryNode).setReplication({ epoch: record.epoch, replicas });
    return { epoch: record.epoch, role: 'replica' };
  }

  /** Resolves once the primary reports the node in sync (heartbeats the lag meanwhile). */
  async function awaitInSync(input: { cluster: string; node: string }): Promise<{ lsn: number }> {
    const ctx = Context.current();
    const db = clusterOf(input.cluster);
    for (;;) {
      const { record } = await readPrimary(cc(), primaryKey(db.name));
      // Promoted meanwhile (another failover chose it): there is nothing left to wait for.
      if (record?.node === input.node) return { lsn: (await probeNode(nodeOf(db, input.node), 2_000)).lsn ?? 0 };
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
    awaitFailover,
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
