/**
 * A drill's private stack (target "isolated"): a copy of the cluster that shares nothing with the
 * real one — its own Temporal dev server, S3-compatible server, config center, node processes
 * (supervised like systemd would), kimiclaw-dr workers, token, directories and ports — its first
 * node seeded with a database restored (and verified) from the real cluster's newest backups, the
 * other nodes rebuilt from it by the stack's own monitor. A cluster in one zone gets a file as its
 * config center and one worker; a cluster in several zones (or regions) gets what a zone needs to
 * fail on its own: an etcd member per zone (per region for nodes without a zone) and witnesses
 * enough for the majority to outlive any one zone and the primary region, a worker per zone
 * serving its nodes, and nodes that hold their leadership lease with the etcd majority. A cluster
 * with a standby region gets a Temporal server and an object store in each region (the primary
 * region's store copied to the others by copyToRegion), and its workers run in their region
 * (DR_REGION) on their region's Temporal. Scenarios that kill a node, a zone, a region, Temporal or
 * a worker kill the private ones. Run by stack-main.ts, a process of its own; everything lives
 * under one directory, removed when the stack stops.
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
  type TemporalDevServer,
  type Versitygw,
  createBucket,
  startDrWorker,
  startTemporalDevServer,
  startVersitygw,
} from '../dev/servers';
import { regionCopyWorkflowId } from '../region/copy-plan';
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
  nodes: Array<{ id: string; zone?: string; region?: string }>;
  /** The cluster's regions as declared (each node names one of them); absent: one region. */
  regions?: { primary: string; standby: string[]; copyIntervalMs: number };
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
  /** The primary region's Temporal server (the only one without regions). */
  temporal: string;
  /** With regions: each region's Temporal server, by region. */
  temporals?: Record<string, string>;
  primary: string;
  pids: Record<string, number>;
  /** Seconds from the start to a steady cluster. */
  startSeconds: number;
}

/**
 * A fault only the stack's own process can inject (it runs every process of the stack), asked by a
 * scenario through the stack's worker:
 * - `orchestrator` (orchestrator-down, "the orchestrator was in the failed zone"): SIGKILL to
 *   `node` (its supervisor holds off as if its host were gone), its region's Temporal server and
 *   workers stopped for `downMs` and started again (the same history file and port), then the
 *   node's supervisor lets it start;
 * - `zone` (zone-failure): every process of `node`'s zone SIGKILLed at once — its nodes (held off by
 *   the supervisor), its etcd member, its worker — and started again after `downMs`;
 * - `region` (region-failure): every process of `node`'s region at once — its nodes, etcd members
 *   and workers SIGKILLed, its object store and Temporal server stopped — and started again after
 *   `downMs`.
 * `id` names the request: asked again with the same id, the stack injects nothing more.
 */
export interface StackFaultRequest {
  id: string;
  kind: 'orchestrator' | 'zone' | 'region';
  node: string;
  downMs: number;
}

/** The fault as injected: when, the pid of `node`, and what was stopped. */
export interface StackFault {
  at: number;
  pid: number;
  killed: string[];
  zone?: string;
  region?: string;
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

/** The stack's configuration (its own Temporal servers, stores, config center and nodes). */
export const stackConfigFile = (dir: string) => join(dir, 'kimiclaw-dr.json');

/** The pids of the stack's processes now (rewritten every second while it runs). */
export const stackPidsFile = (dir: string) => join(dir, 'pids.json');

/** The leadership lease of the stack's nodes when it has zones (a primary cut off fences itself). */
const LEADER_TTL = '3s';
/** An etcd member in no zone or region of the cluster's, for the majority (a tie between two zones, the primary region's loss). */
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
    // A Temporal server and an object store per region (one of each without regions).
    const regions = spec.regions ? [spec.regions.primary, ...spec.regions.standby] : [undefined];
    const home = regions[0];
    const sites = new Map<string | undefined, Site>();
    for (const region of regions) {
      // The primary region's files and pids keep their names of a stack without regions.
      const suffix = region === undefined || region === home ? '' : `-${region}`;
      const startTemporal = (port?: number) =>
        startTemporalDevServer({
          dbFile: join(spec.dir, `temporal${suffix}.db`),
          uiPort: false,
          port,
          logFile: join(spec.dir, `temporal${suffix}.log`),
        });
      const temporal = await startTemporal();
      const port = Number(temporal.address.split(':').pop());
      const creds = { accessKey: 'drill', secretKey: randomBytes(24).toString('base64url') };
      const s3 = await startVersitygw({
        dir: join(spec.dir, `s3${suffix}`),
        ...creds,
        logFile: join(spec.dir, `s3${suffix}.log`),
      });
      const site: Site = {
        suffix,
        temporal,
        // The same port and history file, when a scenario stopped it.
        startTemporalAgain: async () => void (site.temporal = await startTemporal(port)),
        s3,
        storage: {
          endpoint: s3.endpoint,
          bucket: `drill${suffix}`,
          accessKeyId: creds.accessKey,
          secretAccessKey: creds.secretKey,
        },
      };
      stops.push({ name: `Temporal dev server${suffix}`, stop: () => site.temporal.stop() });
      stops.push({ name: `S3 server${suffix}`, stop: () => site.s3.stop() });
      await createBucket(s3.endpoint, creds, site.storage.bucket);
      sites.set(region, site);
    }
    const primarySite = sites.get(home)!;

    // Places: a node's zone, else its region. An etcd member in each place, and witnesses until
    // the loss of any one place, or of the primary region, leaves a majority.
    const placeOf = (n: { zone?: string; region?: string }) => n.zone ?? n.region;
    const places = [...new Set(spec.nodes.flatMap((n) => (placeOf(n) ? [placeOf(n)!] : [])))];
    let etcd: EtcdCluster | undefined;
    if (places.length >= 2) {
      const inHome = places.filter((p) => spec.nodes.some((n) => placeOf(n) === p && n.region === home)).length;
      const names = [...places];
      for (let k = 1; names.length < 3 || (spec.regions && 2 * inHome >= names.length); k++) {
        names.push(k === 1 ? WITNESS : `${WITNESS}-${k}`);
      }
      if (new Set(names).size !== names.length)
        throw new Error(`a zone or region of ${spec.database} is named like a witness`);
      etcd = await startEtcdCluster({ names, root: join(spec.dir, 'etcd') });
      stops.push({ name: 'etcd', stop: () => etcd!.stop() });
    }

    const tokenFile = join(spec.dir, 'node-token');
    await ensureTokenFile(tokenFile);
    const root = join(spec.dir, 'nodes');
    // The seed goes to a node of the primary region.
    const ordered = [
      ...spec.nodes.filter((n) => n.region === undefined || n.region === home),
      ...spec.nodes.filter((n) => n.region !== undefined && n.region !== home),
    ];
    const layout = await Promise.all(ordered.map(async (n) => ({ ...n, url: `http://127.0.0.1:${await freePort()}` })));
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

    const configFile = stackConfigFile(spec.dir);
    const raw = {
      temporal: { address: primarySite.temporal.address },
      storage: primarySite.storage,
      databases: [
        {
          name: spec.database,
          nodes: layout.map((l, i) => ({
            id: l.id,
            url: l.url,
            dataDir: nodes[i]!.dataDir,
            ...(l.zone ? { zone: l.zone } : {}),
            ...(l.region ? { region: l.region } : {}),
          })),
        },
      ],
      ...(spec.regions
        ? {
            regions: {
              primary: spec.regions.primary,
              standby: spec.regions.standby.map((name) => ({
                name,
                storage: sites.get(name)!.storage,
                copyInterval: ms(spec.regions!.copyIntervalMs),
              })),
            },
          }
        : {}),
      archive: { interval: ms(spec.settings.archiveInterval) },
      cluster: {
        configCenter: etcd
          ? {
              kind: 'etcd',
              endpoints: etcd.members.map((m) => ({
                url: m.endpoint,
                ...(spec.nodes.some((n) => n.zone === m.name) ? { zone: m.name } : {}),
              })),
              timeoutMs: 1_000,
            }
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

    // A worker per place serving the nodes there (one for all without places), in its region, on
    // its region's Temporal; each also serves the cluster's shared task queue.
    const groups: Group[] = etcd
      ? places.map((p) => {
          const here = layout.filter((l) => placeOf(l) === p);
          return { name: `worker ${p}`, place: p, region: here[0]!.region, nodes: here.map((l) => l.id) };
        })
      : [{ name: 'worker', region: home }];
    const startWorker = (g: Group) =>
      startDrWorker({
        configFile,
        // Its worker knows it runs a private stack (orchestrator-down may run) and whom to ask.
        env: {
          [STACK_ENV]: spec.dir,
          [STACK_PID_ENV]: String(process.pid),
          ...(g.nodes ? { DR_NODES: g.nodes.join(',') } : {}),
          ...(spec.regions && g.region ? { DR_REGION: g.region } : {}),
          ...(g.region !== home ? { TEMPORAL_ADDRESS: sites.get(g.region)!.temporal.address } : {}),
        },
        logFile: join(spec.dir, g.place ? `worker-${g.place}.log` : 'worker.log'),
      });
    const workers = new Map<string, DrWorkerProcess>();
    const startWorkers = (which: Group[]) =>
      Promise.all(which.map(async (g) => workers.set(g.name, await startWorker(g))));
    for (const g of groups) stops.push({ name: g.name, stop: async () => workers.get(g.name)?.stop() });
    await startWorkers(groups);
    const client = await connectTemporal(config);
    try {
      const dr = new KimiclawDr(client, config);
      await dr.ensureLogArchive(spec.database);
      await dr.ensureMonitor(spec.database);
      // The primary region's store is copied to the standby regions', as in production.
      for (const region of spec.regions?.standby ?? []) {
        await client.workflow.start('copyToRegion', {
          taskQueue: config.temporal.taskQueue,
          workflowId: regionCopyWorkflowId(region),
          args: [{ region }],
        });
      }
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
      const pids: Record<string, number> = {};
      for (const site of sites.values()) {
        pids[`temporal${site.suffix.replace('-', ' ')}`] = site.temporal.pid;
        pids[`s3${site.suffix.replace('-', ' ')}`] = site.s3.pid;
      }
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

    const inRegion = (region: string | undefined) => (g: Group) => !spec.regions || g.region === region;

    const orchestratorDown = async (request: StackFaultRequest, faulted: (f: StackFault) => Promise<void>) => {
      const node = nodes.find((n) => n.id === request.node);
      if (!node?.pid) throw new Error(`node ${request.node} of the stack is not running`);
      // Its host is lost with the orchestrator (its region's Temporal server and workers): not
      // started again until the orchestrator is back.
      const region = layout.find((l) => l.id === node.id)?.region ?? home;
      const site = sites.get(region)!;
      const theirs = groups.filter(inRegion(region));
      const pid = node.pid;
      supervisor.hold(node.id);
      process.kill(pid, 'SIGKILL');
      await faulted({ at: Date.now(), pid, killed: [`node ${node.id}`, 'Temporal', ...theirs.map((g) => g.name)] });
      // A moment for the activity that asked to report back before its worker goes.
      await sleep(500);
      say(`orchestrator down for ${request.downMs} ms: workers killed, Temporal stopped`);
      await Promise.all(theirs.map((g) => workers.get(g.name)!.kill()));
      await site.temporal.stop();
      await sleep(request.downMs);
      await site.startTemporalAgain();
      await startWorkers(theirs);
      supervisor.release(node.id);
      say('orchestrator back: Temporal and the workers started again');
    };
    /** Every process of one place (a zone) or of one region at once, all back after `downMs`. */
    const placeDown = async (
      request: StackFaultRequest,
      faulted: (f: StackFault) => Promise<void>,
      what: { zone?: string; region?: string },
    ) => {
      const where = (l: { zone?: string; region?: string }) =>
        what.region !== undefined ? l.region === what.region : placeOf(l) === what.zone;
      const theirPlaces = places.filter((p) => layout.some((l) => placeOf(l) === p && where(l)));
      const members = (etcd?.members ?? []).filter((m) => theirPlaces.includes(m.name));
      const theirGroups = groups.filter((g) => g.place !== undefined && theirPlaces.includes(g.place));
      const site = what.region !== undefined ? sites.get(what.region) : undefined;
      const label = what.region !== undefined ? `region ${what.region}` : `zone ${what.zone}`;
      if (members.length === 0 || theirGroups.length === 0) {
        throw new Error(`node ${request.node} of the stack is in no ${label} of its own`);
      }
      const down = nodes.filter((_, i) => where(layout[i]!));
      const node = nodes.find((n) => n.id === request.node);
      if (!node?.pid) throw new Error(`node ${request.node} of the stack is not running`);
      const pid = node.pid;
      const at = Date.now();
      // Every process at once; the nodes' supervisor holds off (their hosts are gone).
      for (const n of down) supervisor.hold(n.id);
      const killed = down.filter((n) => n.pid);
      for (const n of killed) process.kill(n.pid!, 'SIGKILL');
      await Promise.all([
        ...members.map((m) => m.kill()),
        ...theirGroups.map((g) => workers.get(g.name)!.kill()),
        ...(site ? [site.s3.stop(), site.temporal.stop()] : []),
      ]);
      await faulted({
        at,
        pid,
        ...what,
        killed: [
          ...killed.map((n) => `node ${n.id}`),
          ...members.map((m) => `etcd member ${m.name}`),
          ...theirGroups.map((g) => g.name),
          ...(site ? ['object store', 'Temporal server'] : []),
        ],
      });
      say(`${label} down for ${request.downMs} ms: ${killed.map((n) => n.id).join(', ')}`);
      await sleep(request.downMs);
      // It comes back as a whole: store and Temporal first, then etcd, workers and nodes.
      if (site) {
        await Promise.all([site.s3.start(), site.startTemporalAgain()]);
      }
      for (const n of down) supervisor.release(n.id);
      await Promise.all([...members.map((m) => m.restart()), startWorkers(theirGroups)]);
      say(`${label} back`);
    };
    return {
      info: {
        configFile,
        temporal: primarySite.temporal.address,
        ...(spec.regions
          ? { temporals: Object.fromEntries([...sites].map(([r, site]) => [r!, site.temporal.address])) }
          : {}),
        primary: steady.primary,
        pids,
        startSeconds: (Date.now() - began) / 1000,
      },
      stop,
      fault: (request, faulted) => {
        const at = layout.find((l) => l.id === request.node);
        if (request.kind === 'zone') return placeDown(request, faulted, { zone: at?.zone });
        if (request.kind === 'region') {
          if (!at?.region) throw new Error(`node ${request.node} of the stack is in no region`);
          return placeDown(request, faulted, { region: at.region });
        }
        return orchestratorDown(request, faulted);
      },
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** A region's Temporal server and object store. */
interface Site {
  /** Beside the names of its files: "" for the primary region, "-<region>" for the others. */
  suffix: string;
  temporal: TemporalDevServer;
  startTemporalAgain: () => Promise<void>;
  s3: Versitygw;
  storage: { endpoint: string; bucket: string; accessKeyId: string; secretAccessKey: string };
}

/** The worker of a place (a zone, or a region without zones), or the one worker of a stack without places. */
interface Group {
  name: string;
  place?: string;
  region?: string;
  nodes?: string[];
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
