/**
 * A drill's private stack (target "isolated"): a copy of the cluster that shares nothing with the
 * real one — its own Temporal dev server, S3-compatible server, config center (a file), node
 * processes (supervised like systemd would), kimiclaw-dr worker, token, directories and ports —
 * its first node seeded with a database restored (and verified) from the real cluster's newest
 * backups, the other nodes rebuilt from it by the stack's own monitor. Scenarios that kill a node,
 * the object store, Temporal or the worker kill the private ones. Run by stack-main.ts, a process
 * of its own; everything lives under one directory, removed when the stack stops.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createClusterActivities } from '../activities/cluster';
import { KimiclawDr, connectTemporal } from '../client';
import { type Config, loadConfig } from '../config';
import { replicationArgs } from '../dev/cluster-nodes';
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

export interface RunningStack {
  info: StackInfo;
  stop(): Promise<void>;
  /**
   * Scenario orchestrator-down, "the orchestrator was in the failed zone": SIGKILL to `node` (its
   * supervisor holds off as if its host were gone), the stack's Temporal server and worker stopped
   * for `downMs` and started again (the same history file and port), then the node's supervisor. Calls `faulted` with
   * the kill's time and pid as soon as the node is killed.
   */
  outage(
    request: { node: string; downMs: number },
    faulted: (fault: { at: number; pid: number }) => Promise<void>,
  ): Promise<void>;
}

/** Where the worker asks the stack's process for an outage (then SIGUSR2), and where the fault is told. */
export const outageFiles = (dir: string) => ({
  request: join(dir, 'outage-request.json'),
  result: join(dir, 'outage-result.json'),
});

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
    const orchestrator = { temporal: await startTemporal() } as {
      temporal: Awaited<ReturnType<typeof startTemporal>>;
      worker?: DrWorkerProcess;
    };
    const temporal = orchestrator.temporal;
    stops.push({ name: 'Temporal dev server', stop: () => orchestrator.temporal.stop() });
    const s3Creds = { accessKey: 'drill', secretKey: randomBytes(24).toString('base64url') };
    const s3 = await startVersitygw({ dir: join(spec.dir, 's3'), ...s3Creds, logFile: join(spec.dir, 's3.log') });
    stops.push({ name: 'S3 server', stop: () => s3.stop() });
    await createBucket(s3.endpoint, s3Creds, 'drill');

    const tokenFile = join(spec.dir, 'node-token');
    await ensureTokenFile(tokenFile);
    const root = join(spec.dir, 'nodes');
    const layout = await Promise.all(
      spec.nodes.map(async (n) => ({ ...n, url: `http://127.0.0.1:${await freePort()}` })),
    );
    const nodes = layout.map((l, i) => {
      const node = new NodeProcess(l.id, root, spec.database, Number(new URL(l.url).port));
      node.logFile = join(root, `${l.id}.log`);
      node.args = [...replicationArgs(layout, i), '--token-file', tokenFile];
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
      temporal: { address: temporal.address },
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
        configCenter: { kind: 'file', path: join(spec.dir, 'config-center.json') },
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

    const startWorker = () =>
      startDrWorker({
        configFile,
        // Its worker knows it runs a private stack (orchestrator-down may run) and whom to ask.
        env: { [STACK_ENV]: spec.dir, [STACK_PID_ENV]: String(process.pid) },
        logFile: join(spec.dir, 'worker.log'),
      });
    const worker = await startWorker();
    orchestrator.worker = worker;
    stops.push({ name: 'worker', stop: () => orchestrator.worker!.stop() });
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
    const pids: Record<string, number> = { temporal: temporal.pid, s3: s3.pid, worker: worker.pid };
    for (const n of nodes) pids[`node ${n.id}`] = n.pid ?? 0;
    return {
      info: {
        configFile,
        temporal: temporal.address,
        primary: steady.primary,
        pids,
        startSeconds: (Date.now() - began) / 1000,
      },
      stop,
      outage: async (request, faulted) => {
        const node = nodes.find((n) => n.id === request.node);
        if (!node?.pid) throw new Error(`node ${request.node} of the stack is not running`);
        const pid = node.pid;
        // Its host is lost with the orchestrator: not started again until the orchestrator is back.
        supervisor.hold(node.id);
        process.kill(pid, 'SIGKILL');
        await faulted({ at: Date.now(), pid });
        // A moment for the activity that asked to report back before its worker goes.
        await sleep(500);
        say(`orchestrator down for ${request.downMs} ms: worker killed, Temporal stopped`);
        await orchestrator.worker!.kill();
        const port = Number(orchestrator.temporal.address.split(':').pop());
        await orchestrator.temporal.stop();
        await sleep(request.downMs);
        orchestrator.temporal = await startTemporal(port);
        orchestrator.worker = await startWorker();
        supervisor.release(node.id);
        say('orchestrator back: Temporal and the worker started again');
      },
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
