/**
 * A drill's activities (docs/architecture.md, "Drills"). The control set: the plan and its
 * refusals, the steady-state check, the integrity check across nodes, the report kept in the
 * store. The host set, on a node's queue (the host that keeps the drill's files): the write load
 * and its ledger, waiting for acknowledgements, and the measurement against every node.
 */
import { Context } from '@temporalio/activity';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { clusterOfConfig } from '../cluster';
import { homeRegion, nodeTaskQueue } from '../config';
import { ledgerEventsOn } from '../dev/cluster-writer';
import { type DrillPlan, DrillInputSchema, planDrill } from '../drill/input';
import { readLedger } from '../drill/ledger-file';
import { startLoad, stopLoad } from '../drill/load';
import { measureRecovery } from '../drill/measure';
import type { DrillReport, Measured } from '../drill/report';
import { recordDrillMetrics, saveReport } from '../drill/report-store';
import { type SteadyState, steadyState } from '../drill/steady';
import { drillTopology } from '../drill/topology';
import { InputProblem } from '../errors';
import { failoverWorkflowId } from '../failover/input';
import type { failover } from '../workflows/cluster';
import { NodeClient } from '../node-client';
import { type createClusterActivities, primaryKey } from './cluster';
import type { ActivityDeps } from './index';

export interface PlannedDrill extends DrillPlan {
  /** Each node's task queue (its host's worker). */
  queues: Record<string, string>;
  healDeadlineMs: number;
  /** With regions: each node's region, and the region this worker (and the drill's Temporal) runs in. */
  regions?: { of: Record<string, string>; here: string };
}

export function createDrillActivities(
  deps: ActivityDeps & {
    /** The control set's clusterStatus (one config-center client per worker, not one per set). */
    clusterStatus: ReturnType<typeof createClusterActivities>['clusterStatus'];
  },
) {
  const { config, stores, metrics, clusterStatus } = deps;

  /** The drill to run, or InputProblem naming the field (nothing has been changed). */
  async function drillPlan(input: { input: unknown }): Promise<PlannedDrill> {
    const parsed = DrillInputSchema.safeParse(input.input ?? {});
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new InputProblem(issue.path.join('.') || 'input', issue.message);
    }
    const plan = planDrill(parsed.data, drillTopology(config));
    const db = clusterOfConfig(config, plan.cluster);
    return {
      ...plan,
      queues: Object.fromEntries(db.nodes.map((n) => [n.id, nodeTaskQueue(config, n)])),
      healDeadlineMs: config.drills.healDeadline,
      ...(config.regions
        ? {
            regions: {
              of: Object.fromEntries(db.nodes.map((n) => [n.id, n.region ?? config.regions!.primary])),
              here: homeRegion(config)!,
            },
          }
        : {}),
    };
  }

  async function drillSteady(input: {
    cluster: string;
    expectPrimary?: string;
    /** The drill's own lease is no topology change of another. */
    leaseHolder?: string;
  }): Promise<SteadyState> {
    const status = await clusterStatus({ cluster: input.cluster });
    return steadyState(status, Date.now(), {
      ...(input.expectPrimary ? { primary: input.expectPrimary } : {}),
      ...(input.leaseHolder ? { leaseHolder: input.leaseHolder } : {}),
    });
  }

  /** Every node holds the primary's data at the primary's acknowledged LSN (rows, ids, checksum). */
  async function drillVerify(input: { cluster: string; primary: string }): Promise<{ same: boolean; detail: string }> {
    const db = clusterOfConfig(config, input.cluster);
    // A fingerprint reads every row up to the LSN (about a second per GiB, more on a busy host).
    const client = (id: string) => {
      const n = db.nodes.find((x) => x.id === id)!;
      return new NodeClient(n.id, n.url, config.nodeAuth.token, STATS_TIMEOUT_MS);
    };
    const lsn = (await client(input.primary).health()).ackedLsn ?? 0;
    const print = async (id: string) => {
      const deadline = Date.now() + 30_000;
      while ((await client(id).health()).lsn < lsn && Date.now() < deadline) await sleep(200);
      const s = await client(id).stats(lsn);
      return JSON.stringify([s.rows, s.minId, s.maxId, s.maxLsn, s.checksum]);
    };
    const expected = await print(input.primary);
    const differ: string[] = [];
    for (const n of db.nodes.filter((x) => x.id !== input.primary)) {
      if ((await print(n.id)) !== expected) differ.push(n.id);
    }
    return differ.length
      ? { same: false, detail: `${differ.join(', ')} hold other data than ${input.primary} at LSN ${lsn}` }
      : { same: true, detail: `every node holds ${input.primary}'s data at LSN ${lsn} (${expected})` };
  }

  /**
   * When the monitor decided the primary had failed: the start of the cluster's failover workflow,
   * if one started after `after` (epoch ms); undefined when none did.
   */
  async function drillFailoverStarted(input: {
    cluster: string;
    after: number;
  }): Promise<{ at?: number; workflowId?: string; preempted?: string }> {
    const handle = Context.current().client.workflow.getHandle<typeof failover>(failoverWorkflowId(input.cluster));
    const started = await handle.describe().then(
      (d) => d.startTime.getTime(),
      () => undefined,
    );
    if (started === undefined || started < input.after) return {};
    // The lease it took over, as its result says: a drill's keeper may only see who held the lease
    // after it (the failover takes and gives it back between two renewals).
    const result = await Promise.race([
      handle.result().catch(() => undefined),
      new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 10_000).unref()),
    ]);
    return {
      at: started,
      workflowId: handle.workflowId,
      ...(result?.preempted ? { preempted: result.preempted } : {}),
    };
  }

  async function drillSaveReport(input: { report: DrillReport }): Promise<{ json: string; html: string }> {
    const keys = await saveReport(stores.s3(), input.report);
    recordDrillMetrics(metrics, [input.report]);
    return keys;
  }

  return { drillPlan, drillSteady, drillVerify, drillFailoverStarted, drillSaveReport };
}

/** How long the integrity check waits for a node's fingerprint (within the control activities' 2 min). */
const STATS_TIMEOUT_MS = 90_000;

/** The kind of the events a bad-writes drill writes (and its repair must remove). */
export const BAD_KIND = 'drill-bad';

/** Runs `fn` heartbeating every second (the host activities' heartbeat timeout is 10 s). */
export async function beating<T>(fn: () => Promise<T>): Promise<T> {
  const ctx = Context.current();
  const beat = setInterval(() => ctx.heartbeat(), 1_000);
  try {
    return await fn();
  } finally {
    clearInterval(beat);
  }
}

/** Where a drill's files live on a node's host: beside that node's data, `<data dir>/drills/<id>`. */
export function drillDirOf(config: ActivityDeps['config'], node: string): (drillId: string) => string {
  const dataDir = config.databases.flatMap((d) => d.nodes).find((n) => n.id === node)?.dataDir;
  return (drillId) => join(dataDir ?? '.', 'drills', drillId);
}

/** On a node's queue: the drill's files live beside that node's data, on its host. */
export function createDrillHostActivities({ config, node }: Pick<ActivityDeps, 'config'> & { node: string }) {
  const dirOf = drillDirOf(config, node);

  /**
   * Starts the write load; answers its process, its ledger, and the lowest LSN a node held before
   * it (no ledger event can be held below it: the measurement reads the nodes from there).
   */
  async function drillLoadStart(input: {
    drillId: string;
    cluster: string;
  }): Promise<{ pid: number; ledger: string; startLsn: number }> {
    const lsns = await Promise.all(
      clusterOfConfig(config, input.cluster).nodes.map((n) =>
        new NodeClient(n.id, n.url, config.nodeAuth.token).health().then(
          (h) => h.lsn,
          () => undefined,
        ),
      ),
    );
    const known = lsns.filter((l): l is number => l !== undefined);
    const startLsn = known.length ? Math.min(...known) : 0;
    const load = await beating(() =>
      startLoad({
        dir: dirOf(input.drillId),
        spec: { configCenter: config.cluster.configCenter, key: primaryKey(input.cluster) },
        token: config.nodeAuth.token,
      }),
    );
    return { ...load, startLsn };
  }

  async function drillLoadStop(input: { pid: number }): Promise<void> {
    await stopLoad(input.pid);
  }

  /** Waits until `count` acknowledgements arrived after `after` (epoch ms); answers the first one's time. */
  async function drillAwaitAcks(input: {
    ledger: string;
    after: number;
    count: number;
    timeoutMs: number;
    /** Count only acknowledgements at a newer epoch than this one. */
    afterEpoch?: number;
  }): Promise<{ firstAt: number; node: string; epoch: number }> {
    const deadline = Date.now() + input.timeoutMs;
    const ctx = Context.current();
    for (;;) {
      const acks = (await readLedger(input.ledger)).filter(
        (a) => a.at > input.after && a.epoch > (input.afterEpoch ?? 0),
      );
      ctx.heartbeat({ acknowledged: acks.length });
      if (acks.length >= input.count) {
        const first = acks.reduce((a, b) => (b.at < a.at ? b : a));
        return { firstAt: first.at, node: first.node, epoch: first.epoch };
      }
      if (Date.now() > deadline) {
        throw new InputProblem(
          'timeout',
          `${acks.length} of ${input.count} writes acknowledged within ${input.timeoutMs} ms after ${new Date(input.after).toISOString()}`,
        );
      }
      // Cancellable: a cancelled drill does not leave this waiting until its deadline.
      await ctx.sleep(100);
    }
  }

  /**
   * Waits until the node reports its file damaged (its scrub, a read or a write found it) and
   * answers when: the node's own time of detection, kept between the fault and the moment this
   * host saw it (the two hosts' clocks may differ).
   */
  async function drillAwaitDamage(input: {
    cluster: string;
    node: string;
    after: number;
    timeoutMs: number;
  }): Promise<{ detectedAt: number; detectedBy: string; reason: string }> {
    const n = clusterOfConfig(config, input.cluster).nodes.find((x) => x.id === input.node);
    if (!n) throw new InputProblem('node', `${input.node} is not a node of ${input.cluster}`);
    const client = new NodeClient(n.id, n.url, config.nodeAuth.token);
    const deadline = Date.now() + input.timeoutMs;
    const ctx = Context.current();
    let last = 'no answer yet';
    for (;;) {
      const health = await client.health().catch((err: unknown) => err as Error);
      const seenAt = Date.now();
      if (!(health instanceof Error) && health.status === 'damaged' && health.damage) {
        const at = Date.parse(health.damage.at);
        const detectedAt = Math.min(seenAt, Math.max(input.after, Number.isNaN(at) ? seenAt : at));
        return { detectedAt, detectedBy: health.damage.detectedBy, reason: health.damage.reason };
      }
      last = health instanceof Error ? health.message : `status ${health.status}`;
      ctx.heartbeat({ last });
      if (seenAt > deadline) {
        throw new InputProblem(
          'timeout',
          `${input.node} did not report its file damaged within ${input.timeoutMs} ms (last: ${last})`,
        );
      }
      await ctx.sleep(100);
    }
  }

  /**
   * The fault of `bad-writes`: `count` batches of two events of kind "drill-bad" written to the
   * primary like a faulty client would, with good writes (the load) in between; answers their LSNs.
   */
  async function drillWriteBadBatches(input: {
    cluster: string;
    count: number;
    pauseMs: number;
  }): Promise<{ at: number; primary: string; lsns: number[] }> {
    const clients = clusterOfConfig(config, input.cluster).nodes.map(
      (n) => new NodeClient(n.id, n.url, config.nodeAuth.token),
    );
    const primaryNow = async (): Promise<NodeClient> => {
      const seen = await Promise.all(
        clients.map((c) =>
          c.health().then(
            (h) => ({ c, h }),
            () => undefined,
          ),
        ),
      );
      const primaries = seen.filter((x) => x?.h.role === 'primary' && x.h.status === 'ok');
      const newest = primaries.sort((a, b) => b!.h.epoch - a!.h.epoch)[0];
      if (!newest) throw new InputProblem('cluster', `no node of ${input.cluster} answers as a writable primary`);
      return newest.c;
    };
    const primary = await primaryNow();
    const at = Date.now();
    const lsns: number[] = [];
    for (let i = 0; i < input.count; i++) {
      const written = await primary.append([
        { kind: BAD_KIND, payload: { drill: 'bad-writes', batch: i } },
        { kind: BAD_KIND, payload: { drill: 'bad-writes', batch: i } },
      ]);
      lsns.push(written.lsn);
      Context.current().heartbeat({ written: lsns.length });
      await sleep(input.pauseMs);
    }
    return { at, primary: primary.nodeId, lsns };
  }

  /** Events of the bad batches each node still holds (beyond `afterLsn`). */
  async function drillCountBad(input: { cluster: string; afterLsn: number }): Promise<Record<string, number>> {
    const counts: Record<string, number> = {};
    await beating(async () => {
      for (const n of clusterOfConfig(config, input.cluster).nodes) {
        const client = new NodeClient(n.id, n.url, config.nodeAuth.token);
        let after = input.afterLsn;
        let bad = 0;
        for (;;) {
          const page = await client.events(after, 50_000);
          bad += page.events.filter((e) => e.kind === BAD_KIND).length;
          if (!page.more) break;
          after = page.lastLsn;
        }
        counts[n.id] = bad;
      }
    });
    return counts;
  }

  /** RTO and RPO from the ledger and what every node holds now. */
  async function drillMeasure(input: {
    ledger: string;
    faultAt: number;
    cluster: string;
    /** The RTO counts acknowledgements at a newer epoch only. */
    afterEpoch?: number;
    /** Read the nodes beyond this LSN only (held before the load began: no ledger event is below it). */
    afterLsn?: number;
  }): Promise<Measured> {
    const acks = await readLedger(input.ledger);
    const db = clusterOfConfig(config, input.cluster);
    const held: Record<string, Awaited<ReturnType<typeof ledgerEventsOn>>> = {};
    await beating(async () => {
      // A node serves events only up to the LSN it knows to be acknowledged, and a replica learns
      // the primary's last acknowledgement from its next message (a heartbeat when idle, 200 ms):
      // read each node once it knows the primary's acknowledged LSN (or after 30 s, when what it
      // lacks counts as lost).
      const clients = db.nodes.map((n) => new NodeClient(n.id, n.url, config.nodeAuth.token));
      const healths = await Promise.all(clients.map((c) => c.health().catch(() => undefined)));
      const head = Math.max(0, ...healths.map((h) => (h?.role === 'primary' ? (h.ackedLsn ?? h.lsn) : 0)));
      const deadline = Date.now() + 30_000;
      for (const [i, n] of db.nodes.entries()) {
        const client = clients[i]!;
        while (Date.now() < deadline && ((await client.health().catch(() => undefined))?.ackedLsn ?? 0) < head) {
          await sleep(100);
        }
        held[n.id] = await ledgerEventsOn(n.url, config.nodeAuth.token, input.afterLsn ?? 0);
      }
    });
    const r = measureRecovery(acks, input.faultAt, held, undefined, input.afterEpoch);
    const sum = (k: 'duplicated' | 'changed') => Object.values(r.nodes).reduce((s, n) => s + n[k], 0);
    return {
      ...(r.rtoMs === undefined ? {} : { rtoMs: r.rtoMs }),
      rpo: r.rpo,
      acknowledged: r.acknowledged,
      ...(r.lostBatches
        ? {
            lost: {
              batches: r.lostBatches.count,
              first: r.lostBatches.first,
              last: r.lostBatches.last,
              byNode: Object.fromEntries(Object.entries(r.nodes).map(([id, n]) => [id, n.lost])),
            },
          }
        : {}),
      duplicated: sum('duplicated'),
      changed: sum('changed'),
    };
  }

  return {
    drillLoadStart,
    drillLoadStop,
    drillAwaitAcks,
    drillAwaitDamage,
    drillWriteBadBatches,
    drillCountBad,
    drillMeasure,
  };
}
