/**
 * Real components for integration tests: a Temporal dev server, versitygw, kimiclaw nodes as
 * separate processes and DuckDB files on disk, all on loopback with free ports under one temp
 * directory, all stopped by `stop()`. Each harness has its own task queue. Nodes require the
 * run's tokens (test/credentials.ts); the config sends the control token from a token file; what
 * the processes print is kept in the run's log directory, or in the harness's own `logs/`.
 */
import { FAILOVER_TASK_TIMEOUT } from '../src/failover/input';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { DefaultLogger, Runtime, bundleWorkflowCode, type WorkflowBundleOption } from '@temporalio/worker';
import { cachedWorkflowBundle } from '../src/workflow-bundle';
import type { WatchProgress } from '../src/activities/cluster';
import { parseConfig, type Config, type ConfigInput } from '../src/config';
import { LOG_DIR, NODE_TOKEN, NODE_TOKEN_ENV, logFile, teeToLog } from './credentials';
import {
  createBucket,
  startTemporalDevServer,
  startVersitygw,
  type TemporalDevServer,
  type Versitygw,
} from '../src/dev/servers';
import { type EtcdCluster, type EtcdServer, startEtcd, startEtcdCluster } from '../src/dev/etcd';
import { type ConfigCenter, openConfigCenter } from '../src/config-center';
import { KimiclawDr } from '../src/client';
import { superviseNodes as supervise } from '../src/dev/node-supervisor';
import { NodeProcess, initialClusterArgs } from '../src/dev/node-process';
import { freePort } from '../src/net';
import { parseSegmentKey } from '../src/restore/segments';
import type { S3Store } from '../src/storage/s3';
import { generateDatabase } from '../src/node/generate';
import { startWorker, type RunningWorker } from '../src/worker';

export const REPO = resolve(__dirname, '..');
export { NodeProcess };
export { AUTH, EVENTS_CREDENTIAL, EVENTS_TOKEN, NODE_CREDENTIAL, NODE_TOKEN } from './credentials';

/**
 * A node process that requires the run's tokens and logs where the run's logs go. It creates its
 * database when missing (--init, in its --role); set createIfMissing = false to see it wait empty.
 */
export function testNode(id: string, root: string, database = 'kimiclaw', port = 0, logDir = LOG_DIR): NodeProcess {
  const node = new NodeProcess(id, root, database, port);
  node.env = NODE_TOKEN_ENV;
  node.logFile = logFile(`node-${id}`, logDir);
  node.createIfMissing = true;
  return node;
}
export const BUCKET = 'kimiclaw-backups';
const CREDS = { accessKey: 'kimiclaw-test', secretKey: 'kimiclaw-test-secret' };

// Worker state changes and retried activities are expected here; keep the test output readable.
Runtime.install({ logger: new DefaultLogger('WARN') });

let bundle: Promise<WorkflowBundleOption> | undefined;
/**
 * Workflows are bundled once per version of the source (the cache every worker process uses,
 * src/workflow-bundle.ts) and shared by the workers of a test process.
 */
export function workflowBundle(): Promise<WorkflowBundleOption> {
  bundle ??= cachedWorkflowBundle().then<WorkflowBundleOption>(
    (cached) =>
      cached ?? bundleWorkflowCode({ workflowsPath: require.resolve('../src/workflows'), logger: quietLogger() }),
  );
  return bundle;
}

function quietLogger() {
  const noop = (): void => undefined;
  return { trace: noop, debug: noop, info: noop, warn: noop, error: (m: string) => console.error(m), log: noop };
}

export interface HarnessOptions {
  /** Extra config merged over the harness's own. */
  config?: (base: ConfigInput) => ConfigInput;
  /** Start an in-process worker (default true). */
  worker?: boolean;
  nodes?: string[];
  objectLock?: boolean;
  /** Size of a generated events database each node starts with. */
  seedBytes?: number;
  /**
   * The nodes form a replicated cluster: the first is primary, the second its synchronous
   * replica, any others asynchronous; etcd (a real one, on loopback) is the config center.
   */
  cluster?: boolean;
  /** More flags for every node process (e.g. a short --scrub-interval). */
  nodeArgs?: string[];
  /** The zone of each node, in `nodes` order. */
  zones?: string[];
  /** etcd as a cluster of members named (and zoned) so, e.g. ['a', 'b', 'c'], instead of one server. */
  etcdMembers?: string[];
  /** The nodes renew a leadership lease of this TTL in the harness's etcd (--leader-etcd). */
  leaderLease?: string;
  /** Temporal keeps its history in a file, so restartTemporal() brings it back as it was. */
  temporalDb?: boolean;
}

export interface WorkerProcessOptions {
  /** Added to the worker's environment (e.g. DR_NODES=node1). */
  env?: NodeJS.ProcessEnv;
  /** A command the worker runs under, its argv appended (e.g. unshare … sh -c '…; exec "$@"' sh). */
  wrapper?: string[];
}

export class Harness {
  temporal!: TemporalDevServer;
  s3!: Versitygw;
  nodes: NodeProcess[] = [];
  config!: Config;
  client!: Client;
  worker: RunningWorker | undefined;
  dir = '';
  taskQueue = `kimiclaw-dr-test-${randomUUID().slice(0, 8)}`;
  etcd: EtcdServer | undefined;
  etcdCluster: EtcdCluster | undefined;
  configFile = '';
  /** Where this harness's processes log: the run's log directory, else <dir>/logs. */
  logDir = '';
  rawConfig: ConfigInput = { storage: { bucket: BUCKET }, databases: [] };
  private variants: RunningWorker[] = [];
  private children: ChildProcess[] = [];

  static async start(options: HarnessOptions = {}): Promise<Harness> {
    const h = new Harness();
    try {
      await h.init(options);
    } catch (err) {
      await h.stop();
      throw err;
    }
    return h;
  }

  private async init(options: HarnessOptions): Promise<void> {
    this.dir = await mkdtemp(join(tmpdir(), 'kimiclaw-dr-test-'));
    this.logDir = LOG_DIR ?? join(this.dir, 'logs');
    const [temporal, s3] = await Promise.all([
      startTemporalDevServer({
        uiPort: false,
        logFile: logFile('temporal', this.logDir),
        ...(options.temporalDb ? { dbFile: this.temporalDbFile() } : {}),
      }),
      startVersitygw({
        dir: join(this.dir, 's3'),
        logFile: logFile('versitygw', this.logDir),
        ...CREDS,
        ...(options.objectLock ? { versioningDir: join(this.dir, 's3-versions') } : {}),
      }),
    ]);
    this.temporal = temporal;
    this.s3 = s3;
    await createBucket(s3.endpoint, CREDS, BUCKET, { objectLock: options.objectLock });
    const ids = options.nodes ?? ['node1'];
    const ports = options.cluster ? await Promise.all(ids.map(() => freePort())) : ids.map(() => 0);
    if (options.cluster && options.etcdMembers) {
      this.etcdCluster = await startEtcdCluster({ names: options.etcdMembers, root: join(this.dir, 'etcd') });
    } else if (options.cluster) {
      this.etcd = await startEtcd({ dataDir: join(this.dir, 'etcd') });
    }
    for (const [i, id] of ids.entries()) {
      const node = testNode(id, join(this.dir, 'nodes'), 'kimiclaw', ports[i], this.logDir);
      if (options.cluster) node.args = initialClusterArgs(ids, ports, i);
      node.args.push(...(options.nodeArgs ?? []));
      const etcdEndpoints = this.etcdCluster?.endpoints ?? (this.etcd ? [this.etcd.endpoint] : []);
      if (options.leaderLease && etcdEndpoints.length > 0) {
        node.args.push('--leader-etcd', etcdEndpoints.join(','), '--leader-ttl', options.leaderLease);
      }
      if (options.seedBytes) {
        await mkdir(node.dataDir, { recursive: true });
        await generateDatabase(join(node.dataDir, `${node.database}.duckdb`), { targetBytes: options.seedBytes });
      }
      this.nodes.push(node);
    }
    // Replicas first, so the primary finds them listening.
    for (const node of [...this.nodes.slice(1), ...this.nodes.slice(0, 1)]) await node.start();
    const tokenFile = join(this.dir, 'node-token');
    await writeFile(tokenFile, `${NODE_TOKEN}\n`, { mode: 0o600 });
    const base: ConfigInput = {
      temporal: { address: temporal.address, taskQueue: this.taskQueue },
      storage: {
        endpoint: s3.endpoint,
        bucket: BUCKET,
        accessKeyId: CREDS.accessKey,
        secretAccessKey: CREDS.secretKey,
        partSizeMiB: 5,
      },
      databases: [
        {
          name: 'kimiclaw',
          nodes: this.nodes.map((n, i) => ({
            id: n.id,
            url: n.url,
            dataDir: n.dataDir,
            ...(options.zones?.[i] ? { zone: options.zones[i] } : {}),
          })),
        },
      ],
      metrics: { port: 0 },
      nodeAuth: { tokenFile },
      ...(this.etcd || this.etcdCluster
        ? {
            cluster: {
              configCenter: {
                kind: 'etcd' as const,
                endpoints: this.etcdCluster
                  ? this.etcdCluster.members.map((m) => ({ url: m.endpoint, zone: m.name }))
                  : [this.etcd!.endpoint],
              },
              probeInterval: '300ms',
            },
          }
        : {}),
    };
    this.rawConfig = options.config ? options.config(base) : base;
    this.config = parseConfig(this.rawConfig, 'test harness');
    this.configFile = join(this.dir, 'kimiclaw-dr.json');
    await writeFile(this.configFile, JSON.stringify(this.rawConfig, null, 2));
    const connection = await Connection.connect({ address: temporal.address });
    this.client = new Client({ connection });
    if (options.worker !== false) await this.startWorker();
  }

  private temporalDbFile(): string {
    return join(this.dir, 'temporal', 'history.db');
  }

  /**
   * Starts the Temporal server again on its port, after `temporal.stop()`: with `temporalDb`, with
   * the history it had (workflows that ran go on).
   */
  async restartTemporal(): Promise<void> {
    const port = Number(this.temporal.address.split(':').pop());
    this.temporal = await startTemporalDevServer({
      uiPort: false,
      port,
      logFile: logFile('temporal', this.logDir),
      dbFile: this.temporalDbFile(),
    });
  }

  async startWorker(): Promise<RunningWorker> {
    this.worker = await startWorker({
      config: this.config,
      workflowBundle: await workflowBundle(),
      sdkMetrics: false,
    });
    return this.worker;
  }

  /**
   * A second worker on its own task queue, with a changed config (a missing bucket, a dead
   * node …), sharing this harness's servers. Stopped by stop().
   */
  async startVariant(mutate: (base: ConfigInput) => ConfigInput): Promise<{ config: Config; worker: RunningWorker }> {
    const raw = JSON.parse(JSON.stringify(this.rawConfig)) as ConfigInput;
    const taskQueue = `kimiclaw-dr-test-${randomUUID().slice(0, 8)}`;
    const config = parseConfig(mutate({ ...raw, temporal: { ...raw.temporal, taskQueue } }), 'test variant');
    const worker = await startWorker({ config, workflowBundle: await workflowBundle(), sdkMetrics: false });
    this.variants.push(worker);
    return { config, worker };
  }

  /** The worker as its own process (to be killed), on this harness's task queues. */
  spawnWorker(options: WorkerProcessOptions = {}): ChildProcess {
    const [command, ...args] = [
      ...(options.wrapper ?? []),
      process.execPath,
      '--import',
      'tsx',
      join(REPO, 'src/worker.ts'),
    ];
    const child = spawn(command!, args, {
      cwd: REPO,
      env: { ...this.env(), DR_METRICS_PORT: '0', KIMICLAW_EXIT_WITH_PARENT: '1', ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    teeToLog([child.stdout, child.stderr], 'worker', this.logDir);
    this.children.push(child);
    return child;
  }

  /** A worker process, once it says it is polling. */
  async spawnReadyWorker(options: WorkerProcessOptions = {}): Promise<ChildProcess> {
    const child = this.spawnWorker(options);
    await new Promise<void>((resolvePromise, reject) => {
      let err = '';
      child.stderr?.setEncoding('utf8').on('data', (d: string) => (err += d));
      child.once('exit', (code) => reject(new Error(`worker exited with ${code}: ${err}`)));
      createInterface({ input: child.stdout! }).on('line', (line) => {
        if (line.includes('"worker-started"')) resolvePromise();
      });
    });
    return child;
  }

  /** Environment for child processes (CLI, worker) pointed at this harness. */
  env(): NodeJS.ProcessEnv {
    return { ...process.env, DR_CONFIG: this.configFile };
  }

  async stop(): Promise<void> {
    for (const w of [this.worker, ...this.variants]) await w?.shutdown().catch(() => undefined);
    for (const c of this.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await this.client?.connection.close().catch(() => undefined);
    await Promise.all(this.nodes.map((n) => n.stop('SIGKILL')));
    await Promise.all(
      [this.temporal?.stop(), this.s3?.stop(), this.etcd?.stop(), this.etcdCluster?.stop()].map((p) =>
        p?.catch(() => undefined),
      ),
    );
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
  }
}

/** Runs the CLI as a user would, in its own process; resolves with its exit code and output. */
export function runCli(
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolvePromise) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(REPO, 'src/cli/main.ts'), ...args], {
      cwd: REPO,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    teeToLog([child.stdout, child.stderr], 'cli');
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('exit', (code) => resolvePromise({ code, stdout, stderr }));
  });
}

/** Polls until `check` returns a value (not undefined) or the time is up. */
export async function eventually<T>(
  check: () => Promise<T | undefined>,
  what: string,
  timeoutMs = 60_000,
  everyMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}

/** Waits until fn answers something other than undefined or false (a condition, a value). */
export function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 60_000): Promise<T> {
  return eventually(
    async () => {
      const value = await fn();
      return value === false ? undefined : value;
    },
    what,
    timeoutMs,
  );
}

/** Every message along a failure's cause chain (workflow → activity → application failure). */
export function failureMessages(err: unknown): string {
  const out: string[] = [];
  for (let e = err as { message?: string; cause?: unknown } | undefined; e; e = e.cause as typeof e) {
    out.push(String(e.message));
  }
  return out.join(' / ');
}

/** What a node's GET /health says about replication (the fields the cluster tests read). */
export interface NodeHealthView {
  role: string;
  epoch: number;
  lsn: number;
  rows: number;
  syncState: string;
  history: Array<{ epoch: number; startLsn: number }>;
  replicas: Array<{ id: string; state: string }>;
}

export async function nodeHealth(url: string): Promise<NodeHealthView> {
  const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(2_000) });
  return (await res.json()) as NodeHealthView;
}

/**
 * What monitorCluster's watch reported in its latest heartbeat: evidence that the monitor had
 * its chance (probe rounds, consecutive failures) before a test asserts that it did nothing.
 */
/** Starts monitorCluster (id monitor-kimiclaw, the failover's short task timeout) and waits until it probes. */
/**
 * Like systemd (or `npm start`): a node process that dies is started again after `delayMs`.
 * Answers the function that stops supervising.
 */
export function superviseNodes(nodes: readonly NodeProcess[], delayMs = 1_000): () => void {
  const supervisor = supervise(nodes, { delayMs, start: (node) => node.start() });
  return () => supervisor.stop();
}

/** A cluster as the drill tests use it: its monitor and log archive running, its nodes supervised. */
export interface DrillCluster {
  h: Harness;
  center: ConfigCenter;
  dr: KimiclawDr;
  stop(): Promise<void>;
}

export async function startDrillCluster(options: HarnessOptions): Promise<DrillCluster> {
  const h = await Harness.start({ nodes: ['node1', 'node2'], cluster: true, ...options });
  const center = openConfigCenter(h.config.cluster.configCenter);
  await recordFirstPrimary(h, center);
  await startMonitor(h.client, h.config.temporal.taskQueue);
  const dr = await KimiclawDr.connect(h.config);
  await dr.ensureLogArchive('kimiclaw');
  // Like systemd (or `npm start`): a node process that dies is started again.
  const stopSupervising = superviseNodes(h.nodes);
  return {
    h,
    center,
    dr,
    stop: async () => {
      stopSupervising();
      await center.close();
      await h.stop();
    },
  };
}

/**
 * Records the first node as primary of epoch 1 (what a monitor would have written) and waits for
 * its synchronous replica to be in sync: the starting point of the cluster tests.
 */
export async function recordFirstPrimary(
  h: Harness,
  center: ConfigCenter,
  key = '/services/kimiclaw/primary',
): Promise<void> {
  await center.compareAndSwap(key, '0', {
    node: h.nodes[0]!.id,
    url: h.nodes[0]!.url,
    epoch: 1,
    since: new Date().toISOString(),
  });
  await waitFor('replica in sync', async () => (await nodeHealth(h.nodes[0]!.url)).syncState === 'in-sync');
}

/**
 * Starts a production single-node drill and resolves once its fault is in: the primary's process
 * (the first node, primary when the drill starts) is gone or has been started again.
 */
export async function startDrillUntilFault(h: Harness, workflowId: string): Promise<WorkflowHandle> {
  const primary = h.nodes[0]!;
  const pid = primary.pid;
  const handle = await h.client.workflow.start('drill', {
    taskQueue: h.config.temporal.taskQueue,
    workflowId,
    args: [{ target: 'production', scenarios: ['single-node'], confirmed: true }],
  });
  await waitFor('the primary killed by the drill', async () => primary.pid !== pid || !primary.running);
  return handle;
}

export async function startMonitor(client: Client, taskQueue: string): Promise<void> {
  await client.workflow.start('monitorCluster', {
    taskQueue,
    workflowId: 'monitor-kimiclaw',
    args: [{}],
    workflowTaskTimeout: FAILOVER_TASK_TIMEOUT,
  });
  await waitFor('the monitor probing', async () => ((await monitorProgress(client))?.probes ?? 0) > 2);
}

export async function monitorProgress(client: Client, cluster = 'kimiclaw'): Promise<WatchProgress | undefined> {
  const description = await client.workflow.getHandle(`monitor-${cluster}`).describe();
  const converter = client.options.loadedDataConverter.payloadConverter;
  for (const activity of description.raw.pendingActivities ?? []) {
    const first = activity.heartbeatDetails?.payloads?.[0];
    if (first) return converter.fromPayload<WatchProgress>(first);
  }
  return undefined;
}

/** How far the database's log archive reaches in the bucket: the end LSN of its newest segment. */
export async function archivedThrough(store: S3Store, database = 'kimiclaw'): Promise<number> {
  const ends = (await store.list(`${database}/log/`)).map((o) => parseSegmentKey(o.key)?.endLsn ?? 0);
  return Math.max(0, ...ends);
}
