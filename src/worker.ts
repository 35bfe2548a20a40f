/**
 * The worker: runs the workflows and control activities on the `kimiclaw-dr` queue, and the
 * node-local activities on `kimiclaw-dr-node-<id>` for every node whose disk is on this host
 * (DR_NODES=node1,node2; all configured nodes by default, the single-host setup; DR_NODES=none
 * for a worker that owns no node's disk). Serves /metrics.
 *
 *   node --import tsx src/worker.ts
 */
import { inspect } from 'node:util';
import {
  DefaultLogger,
  type LogEntry,
  NativeConnection,
  Runtime,
  Worker,
  type LogLevel,
  type WorkflowBundleOption,
} from '@temporalio/worker';
import { cachedWorkflowBundle } from './workflow-bundle';
import { createControlActivities, createNodeActivities } from './activities';
import { loadDrillMetrics } from './drill/report-store';
import { loadConfig, nodeTaskQueue, type Config } from './config';
import { parseLocalNodes, resolveLocalNodes } from './local-nodes';
import { freePort } from './net';
import { DrMetrics, serveMetrics, type MetricsServer } from './metrics';
import { Stores } from './storage/stores';
import { loadCatalogMetrics } from './catalog-metrics';

export interface WorkerOptions {
  config: Config;
  /** Node ids whose disks are on this host; default: every configured node; [] for none. */
  localNodes?: string[];
  /** A prebuilt workflow bundle (tests build it once); default: bundle src/workflows. */
  workflowBundle?: WorkflowBundleOption;
  /** Serve /metrics (default true); port 0 picks a free one. */
  serveMetrics?: boolean;
  /** Install the SDK runtime with Prometheus metrics (once per process; default true). */
  sdkMetrics?: boolean;
}

export interface RunningWorker {
  metrics: DrMetrics;
  metricsServer?: MetricsServer;
  taskQueues: string[];
  /** Resolves when every worker stopped; rejects if one failed. */
  done: Promise<void>;
  shutdown(): Promise<void>;
}

/** Progress (bytes done) reaches the server at most this often; progress bars read it. */
const HEARTBEAT_THROTTLE = '1s';
const STICKY_TIMEOUT = '1s';
const CONTROL_POLLS = 1;

let sdkMetricsAddress: string | undefined;

/**
 * The SDK's log lines on stderr, minus the warning that a node queue has no workflows: those
 * queues carry only the activities that need the node's disk, by design.
 */
function logLine(entry: LogEntry): void {
  if (entry.message.startsWith('No workflows registered')) return;
  const time = new Date(Number(entry.timestampNanos / 1_000_000n)).toISOString();
  const meta =
    entry.meta && Object.keys(entry.meta).length > 0 ? ` ${inspect(entry.meta, { breakLength: Infinity })}` : '';
  process.stderr.write(`${time} [${entry.level}] ${entry.message}${meta}\n`);
}

/** Temporal's own SDK metrics on a loopback port; /metrics appends them. */
async function installSdkMetrics(): Promise<string> {
  if (!sdkMetricsAddress) {
    sdkMetricsAddress = `127.0.0.1:${await freePort()}`;
    Runtime.install({
      // Worker state changes and bundling are INFO; DR_LOG_LEVEL=INFO shows them.
      logger: new DefaultLogger((process.env.DR_LOG_LEVEL ?? 'WARN') as LogLevel, logLine),
      telemetryOptions: { metrics: { prometheus: { bindAddress: sdkMetricsAddress } } },
    });
  }
  return sdkMetricsAddress;
}

export async function startWorker(options: WorkerOptions): Promise<RunningWorker> {
  const { config } = options;
  const sdkAddress = options.sdkMetrics === false ? undefined : await installSdkMetrics();
  const connection = await NativeConnection.connect({
    address: config.temporal.address ?? 'localhost:7233',
    tls: config.temporal.tls || undefined,
    apiKey: config.temporal.apiKey,
  });
  const metrics = new DrMetrics({ defaultMetrics: true });
  const local = resolveLocalNodes(config, options.localNodes);
  const stores = new Stores(config, { localNodes: local });
  const allNodes = config.databases.flatMap((db) => db.nodes);

  const bundle = options.workflowBundle ?? (await cachedWorkflowBundle());
  const workflowSource = bundle ? { workflowBundle: bundle } : { workflowsPath: require.resolve('./workflows') };
  const control = createControlActivities({ config, stores, metrics });
  const workers: Worker[] = [
    await Worker.create({
      connection,
      namespace: config.temporal.namespace,
      taskQueue: config.temporal.taskQueue,
      ...workflowSource,
      activities: control,
      maxHeartbeatThrottleInterval: HEARTBEAT_THROTTLE,
      // A workflow cached on a worker that is lost with its zone goes to another worker after
      // this, instead of Temporal's default 10 s.
      stickyQueueScheduleToStartTimeout: STICKY_TIMEOUT,
      // A worker frozen with its zone keeps its long polls open and Temporal may hand each of them
      // a task it never answers: few polls mean few such tasks (DR work is low in volume).
      maxConcurrentWorkflowTaskPolls: CONTROL_POLLS,
      maxConcurrentActivityTaskPolls: CONTROL_POLLS,
    }),
  ];
  for (const node of allNodes.filter((n) => local.includes(n.id))) {
    workers.push(
      await Worker.create({
        connection,
        namespace: config.temporal.namespace,
        taskQueue: nodeTaskQueue(config, node),
        // The monitor's sentry for this node's zone runs here too (sentryNodes): it needs no disk,
        // only to run where this node's host is.
        activities: {
          ...createNodeActivities({ config, stores, metrics, node: node.id }),
          watchCluster: control.watchCluster,
        },
        maxHeartbeatThrottleInterval: HEARTBEAT_THROTTLE,
      }),
    );
  }

  let metricsServer: MetricsServer | undefined;
  if (options.serveMetrics !== false) {
    metricsServer = await serveMetrics(metrics, {
      host: config.metrics.host,
      port: config.metrics.port,
      extra: sdkAddress ? () => fetch(`http://${sdkAddress}/metrics`).then((r) => r.text()) : undefined,
    });
  }
  // Gauges start from the catalog, so a restarted worker does not report "never backed up".
  void loadCatalogMetrics(config, stores, metrics).catch((err: unknown) =>
    console.warn(`could not load backup metrics from the catalog: ${(err as Error).message}`),
  );
  // And the drill metrics from the stored drill reports ("drill overdue" survives a restart).
  void loadDrillMetrics(stores.s3(), metrics).catch((err: unknown) =>
    console.warn(`could not load drill metrics from the stored reports: ${(err as Error).message}`),
  );

  const done = Promise.all(workers.map((w) => w.run())).then(async () => {
    await metricsServer?.close();
    stores.destroy();
    await connection.close();
  });
  return {
    metrics,
    metricsServer,
    taskQueues: workers.map((w) => w.options.taskQueue),
    done,
    async shutdown() {
      for (const w of workers) if (w.getState() === 'RUNNING') w.shutdown();
      await done;
    },
  };
}

/** The worker as a process: config from file and env, stops cleanly on SIGINT/SIGTERM. */
export async function runWorkerMain(): Promise<void> {
  const config = loadConfig();
  const worker = await startWorker({ config, localNodes: parseLocalNodes(process.env.DR_NODES) });
  console.log(
    JSON.stringify({ event: 'worker-started', taskQueues: worker.taskQueues, metrics: worker.metricsServer?.url }),
  );
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => void worker.shutdown());
  }
  // A worker a test (or `start`) runs as its child ends with its parent, even one that was killed
  // and could not stop it.
  if (process.env.KIMICLAW_EXIT_WITH_PARENT === '1') {
    const parent = process.ppid;
    const watch = setInterval(() => {
      if (process.ppid === parent) return;
      clearInterval(watch);
      void worker.shutdown();
      setTimeout(() => process.exit(1), 5_000).unref();
    }, 1_000);
    watch.unref();
  }
  await worker.done;
}

if (require.main === module) {
  runWorkerMain().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
