/**
 * A drill's private stack (target "isolated"): a copy of the cluster that shares nothing with the
 * real one — its own Temporal dev server, S3-compatible server, config center, node processes
 * (supervised like systemd would), kimiclaw-dr workers, token, directories and ports — its first
 * node seeded with a database restored (and verified) from the real cluster's newest backups, the
 * other nodes rebuilt from it by the stack's own monitor. A cluster in one zone gets a file as its
 * config center and one worker; a cluster in several zones gets what a zone needs to fail on its
 * own: an etcd member per zone (and a witness when there are two), a worker per zone serving its
 * nodes, and nodes that hold their leadership lease with the etcd majority. Scenarios that kill a
 * node, a zone, Temporal or a worker kill the private ones. Run by stack-main.ts, a process of its
 * own; everything lives under one directory, removed when the stack stops.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createClusterActivities } from '../activities/cluster';
import { KimiclawDr, connectTemporal } from '../client';
import { type Config, loadConfig } from '../config';
import { replicationArgs } from '../dev/cluster-nodes';
import { type EtcdCluster, startEtcdCluster } from '../dev/etcd';
import { NodeProcess } from '../dev/node-process';
import { superviseNodes } from '../dev/node-supervisor';
import {
  type DrWorkerProcess,
  createBucket,
  startDrWorker,
  startTemporalDevServer,
  startVersitygw,
} from '../dev/servers';
import { ensureTokenFile } from '../dev/token-file';
import { openDatabase, withConnection } from '../duckdb/open';
import { SET_STATE_SQL, STATE_ROLE } from '../duckdb/schema';
import { Stores } from '../storage/stores';
import { DrMetrics } from '../metrics';
import { freePort } from '../net';
import { DRILL_SCENARIOS } from './input';
import { type SteadyState, steadyState } from './steady';
import { STACK_ENV, STACK_PID_ENV } from './topology';

export interface StackSpec {
  /** Everything of the stack lives here (removed when it stops). */
  dir: string;
  /** The cluster's database name; the private nodes carry the real nodes' ids and zones. */
  database: string;
  nodes: Array<{ id: string; zone?: string }>;
  /** A verified database file restored from the real cluster's backups; moved into the first node. */
  seed: string;
  /** Settings carried over from the real cluster's configuration, in milliseconds. */
  settings: {
    archiveInterval: number;
    probeInterval: number;
    replicaSilence: number;
    degradeAfter: number;
    failureThreshold: number;
    healDeadline: number;
  };
  /** How long the stack may take to be steady (its standby rebuilt and in sync). */
  steadyTimeoutMs: number;
}

/** What the drill needs to drive the stack, and every process it runs (for a teardown after a crash). */
export interface StackInfo {
  configFile: string;
  temporal: string;
  primary: string;
  pids: Record<string, number>;
  /** Seconds from the start to a steady cluster. */
  startSeconds: number;
}

/**
 * A fault only the stack's own process can inject (it runs every process of the stack), asked by a
 * scenario through the stack's worker:
 * - `orchestrator` (orchestrator-down, "the orchestrator was in the failed zone"): SIGKILL to
 *   `node` (its supervisor holds off as if its host were gone), the stack's Temporal server and
 *   every worker stopped for `downMs` and started again (the same history file and port), then the
 *   node's supervisor lets it start;
 * - `zone` (zone-failure): every process of `node`'s zone SIGKILLed at once — its nodes (held off by
 *   the supervisor), its etcd member, its worker — and started again after `downMs`.
 * `id` names the request: asked again with the same id, the stack injects nothing more.
 */
export interface StackFaultRequest {
  id: string;
  kind: 'orchestrator' | 'zone';
  node: string;
  downMs: number;
}

/** The fault as injected: when, the pid of `node`, and what was stopped. */
export interface StackFault {
  at: number;
  pid: number;
  killed: string[];
  zone?: string;
}

export interface RunningStack {
  info: StackInfo;
  stop(): Promise<void>;
  /** Injects a fault; calls `faulted` as soon as it is in, and resolves once the stopped processes are back. */
  fault(request: StackFaultRequest, faulted: (fault: StackFault) => Promise<void>): Promise<void>;
}

/** Where a worker asks the stack's process for a fault (then SIGUSR2). */
export const faultRequestFile = (dir: string) => join(dir, 'fault-request.json');
/** Where the stack's process tells the fault of request `id` once it is in. */
export const faultResultFile = (dir: string, id: string) => join(dir, `fault-${id}.json`);

/** The pids of the stack's processes now (rewritten every second while it runs). */
export const stackPidsFile = (dir: string) => join(dir, 'pids.json');

/** The leadership lease of the stack's nodes when it has zones (a primary cut off fences itself). */
const LEADER_TTL = '3s';
/** The etcd member that breaks a tie between two zones. */
const WITNESS = 'witness';
const ms = (n: number) => `${n}ms`;

export async function startStack(spec: StackSpec, say: (line: string) => void): Promise<RunningStack> {
  const began = Date.now();
  const stops: Array<{ name: string; stop: () => Promise<unknown> }> = [];
  const stop = async () => {
    for (const s of stops.reverse()) {
      await s.stop().catch((err: unknown) => say(`stopping ${s.name}: ${(err as Error).message}`));
    }
    stops.length = 0;
    await rm(spec.dir, { recursive: true, force: true });
  };
  try {
    const startTemporal = (port?: number) =>
      startTemporalDevServer({
        dbFile: join(spec.dir, 'temporal.db'),
        uiPort: false,
        port,
        logFile: join(spec.dir, 'temporal.log'),
      });
    // The orchestrator, replaced when an outage scenario stops and starts it again.
    const orchestrator = { temporal: await startTemporal() };
    stops.push({ name: 'Temporal dev server', stop: () => orchestrator.temporal.stop() });
    const s3Creds = { accessKey: 'drill', secretKey: randomBytes(24).toString('base64url') };
    const s3 = await startVersitygw({ dir: join(spec.dir, 's3'), ...s3Creds, logFile: join(spec.dir, 's3.log') });
    stops.push({ name: 'S3 server', stop: () => s3.stop() });
    await createBucket(s3.endpoint, s3Creds, 'drill');

    // Zones: an etcd member in each (and a witness to break a tie between two).
    const zones = [...new Set(spec.nodes.flatMap((n) => (n.zone ? [n.zone] : [])))];
    let etcd: EtcdCluster | undefined;
    if (zones.length >= 2) {
      const names = zones.length === 2 ? [...zones, zones.includes(WITNESS) ? `${WITNESS}-0` : WITNESS] : zones;
      etcd = await startEtcdCluster({ names, root: join(spec.dir, 'etcd') });
      stops.push({ name: 'etcd', stop: () => etcd!.stop() });
    }

    const tokenFile = join(spec.dir, 'node-token');
    await ensureTokenFile(tokenFile);
    const root = join(spec.dir, 'nodes');
    const layout = await Promise.all(
      spec.nodes.map(async (n) => ({ ...n, url: `http://127.0.0.1:${await freePort()}` })),
    );
    const nodes = layout.map((l, i) => {
      const node = new NodeProcess(l.id, root, spec.database, Number(new URL(l.url).port));
      node.logFile = join(root, `${l.id}.log`);
      node.args = [
        ...replicationArgs(layout, i),
        '--token-file',
        tokenFile,
        // The production shape with zones: the primary renews its leadership lease with the etcd majority.
        ...(etcd ? ['--leader-etcd', etcd.endpoints.join(','), '--leader-ttl', LEADER_TTL] : []),
      ];
      return node;
    });
    const first = nodes[0]!;
    await seedPrimary(spec.seed, join(first.dataDir, `${spec.database}.duckdb`));
    // The others start without a database ("empty") and are rebuilt from the first by the monitor.
    for (const node of nodes) {
      stops.push({ name: `node ${node.id}`, stop: () => node.stop('SIGTERM') });
      await node.start();
    }
    const supervisor = superviseNodes(nodes, { delayMs: 2_000, start: (n) => n.start(), say });
    stops.push({ name: 'node supervisor', stop: async () => supervisor.stop() });

    const configFile = join(spec.dir, 'kimiclaw-dr.json');
    const raw = {
      temporal: { address: orchestrator.temporal.address },
      storage: {
        endpoint: s3.endpoint,
        bucket: 'drill',
        accessKeyId: s3Creds.accessKey,
        secretAccessKey: s3Creds.secretKey,
      },
      databases: [
        {
          name: spec.database,
          nodes: layout.map((l, i) => ({
            id: l.id,
            url: l.url,
            dataDir: nodes[i]!.dataDir,
            ...(l.zone ? { zone: l.zone } : {}),
          })),
        },
      ],
      archive: { interval: ms(spec.settings.archiveInterval) },
      cluster: {
        configCenter: etcd
          ? { kind: 'etcd', endpoints: etcd.members.map((m) => ({ url: m.endpoint, zone: m.name })), timeoutMs: 1_000 }
          : { kind: 'file', path: join(spec.dir, 'config-center.json') },
        probeInterval: ms(spec.settings.probeInterval),
        replicaSilence: ms(spec.settings.replicaSilence),
        degradeAfter: ms(spec.settings.degradeAfter),
        failureThreshold: spec.settings.failureThreshold,
      },
      // The stack is the drill's to break: every scenario may run on it.
      drills: { healDeadline: ms(spec.settings.healDeadline), production: { scenarios: [...DRILL_SCENARIOS] } },
      nodeAuth: { tokenFile },
      metrics: { port: 0 },
    };
    await writeFile(configFile, `${JSON.stringify(raw, null, 2)}\n`, { mode: 0o600 });
    const config = loadConfig({ file: configFile, env: {} });

    // A worker per zone serving the nodes of its zone (one for all without zones); each also
    // serves the cluster's shared task queue.
    const groups: Array<{ name: string; zone?: string; nodes?: string[] }> = etcd
      ? zones.map((z) => ({ name: `worker ${z}`, zone: z, nodes: layout.filter((l) => l.zone === z).map((l) => l.id) }))
      : [{ name: 'worker' }];
    const startWorker = (g: (typeof groups)[number]) =>
      startDrWorker({
        configFile,
        // Its worker knows it runs a private stack (orchestrator-down may run) and whom to ask.
        env: {
          [STACK_ENV]: spec.dir,
          [STACK_PID_ENV]: String(process.pid),
          ...(g.nodes ? { DR_NODES: g.nodes.join(',') } : {}),
        },
        logFile: join(spec.dir, g.zone ? `worker-${g.zone}.log` : 'worker.log'),
      });
    const workers = new Map<string, DrWorkerProcess>();
    const startWorkers = (which: typeof groups) =>
      Promise.all(which.map(async (g) => workers.set(g.name, await startWorker(g))));
    for (const g of groups) stops.push({ name: g.name, stop: async () => workers.get(g.name)?.stop() });
    await startWorkers(groups);
    const client = await connectTemporal(config);
    try {
      const dr = new KimiclawDr(client, config);
      await dr.ensureLogArchive(spec.database);
      await dr.ensureMonitor(spec.database);
    } finally {
      await client.connection.close();
    }
    const steady = await awaitSteady(config, spec.database, spec.steadyTimeoutMs);
    if (!steady.steady) {
      throw new Error(
        `the private stack was not steady within ${spec.steadyTimeoutMs / 1000} s: ${steady.problems.join('; ')}`,
      );
    }
    const pidsNow = () => {
      const pids: Record<string, number> = { temporal: orchestrator.temporal.pid, s3: s3.pid };
      for (const [name, w] of workers) pids[name] = w.pid;
      for (const m of etcd?.members ?? []) pids[`etcd ${m.name}`] = m.pid ?? 0;
      for (const n of nodes) pids[`node ${n.id}`] = n.pid ?? 0;
      return pids;
    };
    const pids = pidsNow();
    // Faults and supervisors start processes again under new pids: they are written down every
    // second, for a teardown after this process was killed.
    const pidsFile = stackPidsFile(spec.dir);
    const recording = setInterval(() => {
      writeFile(pidsFile, JSON.stringify(pidsNow())).catch(() => undefined);
    }, 1_000);
    stops.push({ name: 'pid record', stop: async () => clearInterval(recording) });

    const orchestratorDown = async (request: StackFaultRequest, faulted: (f: StackFault) => Promise<void>) => {
      const node = nodes.find((n) => n.id === request.node);
      if (!node?.pid) throw new Error(`node ${request.node} of the stack is not running`);
      // Its host is lost with the orchestrator: not started again until the orchestrator is back.
      const pid = node.pid;
      supervisor.hold(node.id);
      process.kill(pid, 'SIGKILL');
      await faulted({ at: Date.now(), pid, killed: [`node ${node.id}`, 'Temporal', ...workers.keys()] });
      // A moment for the activity that asked to report back before its worker goes.
      await sleep(500);
      say(`orchestrator down for ${request.downMs} ms: workers killed, Temporal stopped`);
      await Promise.all([...workers.values()].map((w) => w.kill()));
      const port = Number(orchestrator.temporal.address.split(':').pop());
      await orchestrator.temporal.stop();
      await sleep(request.downMs);
      orchestrator.temporal = await startTemporal(port);
      await startWorkers(groups);
      supervisor.release(node.id);
      say('orchestrator back: Temporal and the workers started again');
    };
    const zoneDown = async (request: StackFaultRequest, faulted: (f: StackFault) => Promise<void>) => {
      const zone = layout.find((l) => l.id === request.node)?.zone;
      const member = etcd?.members.find((m) => m.name === zone);
      const group = groups.find((g) => g.zone !== undefined && g.zone === zone);
      if (!zone || !member || !group) throw new Error(`node ${request.node} of the stack is in no zone of its own`);
      const inZone = nodes.filter((_, i) => layout[i]!.zone === zone);
      const node = nodes.find((n) => n.id === request.node);
      if (!node?.pid) throw new Error(`node ${request.node} of the stack is not running`);
      const pid = node.pid;
      const at = Date.now();
      // Every process of the zone at once; its nodes' supervisor holds off (their hosts are gone).
      for (const n of inZone) supervisor.hold(n.id);
      const killed = inZone.filter((n) => n.pid);
      for (const n of killed) process.kill(n.pid!, 'SIGKILL');
      await Promise.all([member.kill(), workers.get(group.name)!.kill()]);
      await faulted({
        at,
        pid,
        zone,
        killed: [...killed.map((n) => `node ${n.id}`), `etcd member ${member.name}`, group.name],
      });
      say(
        `zone ${zone} down for ${request.downMs} ms: ${killed.map((n) => n.id).join(', ')}, etcd ${member.name}, ${group.name}`,
      );
      await sleep(request.downMs);
      // The zone comes back as a whole: its nodes (started by their supervisor), etcd member, worker.
      for (const n of inZone) supervisor.release(n.id);
      await Promise.all([member.restart(), startWorkers([group])]);
      say(`zone ${zone} back`);
    };
    return {
      info: {
        configFile,
        temporal: orchestrator.temporal.address,
        primary: steady.primary,
        pids,
        startSeconds: (Date.now() - began) / 1000,
      },
      stop,
      fault: (request, faulted) =>
        request.kind === 'zone' ? zoneDown(request, faulted) : orchestratorDown(request, faulted),
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * The restored file becomes the first node's database, as primary: a backup keeps the role its
 * node had (a replica's backup says replica), and a cluster needs one node that says primary.
 */
async function seedPrimary(seed: string, path: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await rename(seed, path);
  await rename(`${seed}.wal`, `${path}.wal`).catch(() => undefined);
  const db = await openDatabase(path);
  try {
    await withConnection(db, (c) => c.run(SET_STATE_SQL, [STATE_ROLE, 'primary']));
  } finally {
    db.close();
  }
}

/** Polls the stack's cluster until the drill's steady-state check passes, or the time is up. */
async function awaitSteady(config: Config, cluster: string, timeoutMs: number): Promise<SteadyState> {
  const activities = createClusterActivities({ config, stores: new Stores(config), metrics: new DrMetrics() });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const now = steadyState(await activities.clusterStatus({ cluster }), Date.now());
    if (now.steady || Date.now() > deadline) return now;
    await sleep(500);
  }
}
