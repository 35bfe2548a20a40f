/**
 * What every benchmark runs against, on loopback: a Temporal dev server, versitygw with a bucket,
 * one kimiclaw node on a generated events database (kept in --dir and reused), and a worker.
 * startClusterBenchEnv: the same with two nodes (primary + synchronous replica) seeded with one
 * generated file, and etcd as the config center, as test/harness.ts starts a cluster.
 */
import { constants, existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { KimiclawDr } from '../src/client';
import { parseConfig, type Config } from '../src/config';
import { type ConfigCenter, openConfigCenter } from '../src/config-center';
import { startEtcd } from '../src/dev/etcd';
import { NodeProcess } from '../src/dev/node-process';
import { newNodeToken } from '../src/dev/token-file';
import { createBucket, startTemporalDevServer, startVersitygw } from '../src/dev/servers';
import { freePort } from '../src/net';
import { NodeToken } from '../src/node-token';
import { openDatabase } from '../src/duckdb/open';
import { generateDatabase, parseSize } from '../src/node/generate';
import { startWorker } from '../src/worker';

export const BUCKET = 'kimiclaw-backups';
export const MB = 1_000_000;
const CREDS = { accessKey: 'bench', secretKey: 'bench-secret-key' };

export function log(line: string): void {
  process.stdout.write(`${line}\n`);
}

let runtimeInstalled = false;
/** The SDK runtime can be installed once per process; a bench may start several environments. */
function installRuntime(): void {
  if (runtimeInstalled) return;
  Runtime.install({ logger: new DefaultLogger('WARN') });
  runtimeInstalled = true;
}

export interface BenchEnv {
  root: string;
  dbPath: string;
  node: NodeProcess;
  config: Config;
  client: Client;
  dr: KimiclawDr;
  s3Client: S3Client;
  stop(): Promise<void>;
}

/** Starts everything; with `dir`, the generated database is kept there for the next run. */
export async function startBenchEnv(options: { dir?: string; size: string }): Promise<BenchEnv> {
  installRuntime();
  const root = options.dir ?? (await mkdtemp(join(tmpdir(), 'kimiclaw-bench-')));
  await mkdir(root, { recursive: true });
  await rm(join(root, 's3'), { recursive: true, force: true });
  const [temporal, s3] = await Promise.all([
    startTemporalDevServer({ uiPort: false }),
    startVersitygw({ dir: join(root, 's3'), ...CREDS }),
  ]);
  await createBucket(s3.endpoint, CREDS, BUCKET);
  const node = new NodeProcess('node1', join(root, 'nodes'));
  // A fresh token per run, handed over as the environment, never argv.
  const token = newNodeToken();
  node.env = { KIMICLAW_NODE_TOKENS: token };
  await mkdir(node.dataDir, { recursive: true });
  const dbPath = join(node.dataDir, 'kimiclaw.duckdb');
  if (existsSync(dbPath)) {
    log(`reusing ${dbPath} (${((await stat(dbPath)).size / MB).toFixed(0)} MB)`);
  } else {
    const generated = await generateDatabase(dbPath, { targetBytes: parseSize(options.size) });
    log(
      `generated ${generated.rows.toLocaleString('en-US')} events, ${(generated.bytes / MB).toFixed(0)} MB in ${(generated.durationMs / 1000).toFixed(1)} s`,
    );
  }
  await node.start();
  const config = parseConfig(
    {
      temporal: { address: temporal.address, taskQueue: 'kimiclaw-dr-bench' },
      storage: {
        endpoint: s3.endpoint,
        bucket: BUCKET,
        accessKeyId: CREDS.accessKey,
        secretAccessKey: CREDS.secretKey,
      },
      databases: [{ name: 'kimiclaw', nodes: [{ id: node.id, url: node.url, dataDir: node.dataDir }] }],
      metrics: { port: 0 },
      nodeAuth: { token },
    },
    'bench',
  );
  const worker = await startWorker({ config, sdkMetrics: false });
  const connection = await Connection.connect({ address: temporal.address });
  const client = new Client({ connection });
  // The plan's pipelines use a plain S3 client; no optional checksums, as in earlier runs.
  const s3Client = new S3Client({
    endpoint: s3.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: CREDS.accessKey, secretAccessKey: CREDS.secretKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  return {
    root,
    dbPath,
    node,
    config,
    client,
    dr: new KimiclawDr(client, config),
    s3Client,
    async stop() {
      await worker.shutdown();
      await connection.close();
      s3Client.destroy();
      await node.stop();
      await Promise.all([temporal.stop(), s3.stop()]);
      if (options.dir) await rm(join(root, 's3'), { recursive: true, force: true });
      else await rm(root, { recursive: true, force: true });
    },
  };
}

export interface ClusterBenchEnv {
  root: string;
  /** node1 starts as primary, node2 as its synchronous replica. */
  nodes: NodeProcess[];
  config: Config;
  client: Client;
  dr: KimiclawDr;
  center: ConfigCenter;
  /** The control token (every route) and the events token (what the writers send). */
  control: NodeToken;
  events: NodeToken;
  /** The generated file both nodes started from, and its last LSN (the ledgers' events lie beyond it). */
  seedPath: string;
  seedLsn: number;
  /** Restarts the nodes (replicas first) with other extra flags, e.g. another --scrub-interval. */
  restartNodes(extraArgs: string[]): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A two-node cluster on one generated database: the seed (<root>/seed-<size>.duckdb, kept with
 * --dir) is copied to both nodes, so they start with the same history; etcd, versitygw, Temporal
 * and a worker with the cluster config (production defaults for probes, lease and archive).
 * Everything the processes print goes to <root>/cluster-logs (replaced each run, kept with --dir).
 */
export async function startClusterBenchEnv(options: {
  dir?: string;
  size: string;
  nodeArgs: string[];
  /** More configuration for the worker (top-level sections, e.g. drills). */
  config?: Record<string, unknown>;
  /** The zones of node1 and node2 in the configuration (none when left out). */
  zones?: [string, string];
  /**
   * A standby region: node3 (an asynchronous replica, seeded like the others) in zone c of region
   * b, node1 and node2 in region a; the standby region's store is a bucket of its own.
   */
  standbyRegion?: boolean;
}): Promise<ClusterBenchEnv> {
  installRuntime();
  const root = options.dir ?? (await mkdtemp(join(tmpdir(), 'kimiclaw-bench-')));
  const work = join(root, 'cluster');
  const logs = join(root, 'cluster-logs');
  await rm(work, { recursive: true, force: true });
  await rm(logs, { recursive: true, force: true });
  await mkdir(logs, { recursive: true });
  const seed = join(root, `seed-${options.size}.duckdb`);
  if (existsSync(seed)) {
    log(`reusing ${seed} (${((await stat(seed)).size / MB).toFixed(0)} MB)`);
  } else {
    const generated = await generateDatabase(seed, { targetBytes: parseSize(options.size) });
    log(
      `generated ${generated.rows.toLocaleString('en-US')} events, ${(generated.bytes / MB).toFixed(0)} MB in ${(generated.durationMs / 1000).toFixed(1)} s`,
    );
  }
  const seedLsn = await lastLsn(seed);
  const [temporal, s3, etcd] = await Promise.all([
    startTemporalDevServer({ uiPort: false, logFile: join(logs, 'temporal.log') }),
    startVersitygw({ dir: join(work, 's3'), logFile: join(logs, 'versitygw.log'), ...CREDS }),
    startEtcd({ dataDir: join(work, 'etcd') }),
  ]);
  const servers = [temporal, s3, etcd];
  // Closed first (the worker before the nodes it calls), newest first.
  const stops: Array<() => Promise<unknown>> = [];
  const nodes: NodeProcess[] = [];
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
    await Promise.all(nodes.map((n) => n.stop('SIGKILL')));
    await Promise.all(servers.map((server) => server.stop().catch(() => undefined)));
    if (options.dir) await rm(work, { recursive: true, force: true });
    else await rm(root, { recursive: true, force: true });
  };
  try {
    await createBucket(s3.endpoint, CREDS, BUCKET);
    const ids = options.standbyRegion ? ['node1', 'node2', 'node3'] : ['node1', 'node2'];
    const ports: number[] = [];
    for (const _ of ids) ports.push(await freePort());
    // Fresh tokens per run, handed over as the environment, never argv.
    const control = newNodeToken();
    const events = newNodeToken();
    for (const [i, id] of ids.entries()) {
      const port = ports[i]!;
      const node = new NodeProcess(id, join(work, 'nodes'), 'kimiclaw', port);
      node.env = { KIMICLAW_NODE_TOKENS: control, KIMICLAW_EVENTS_TOKENS: events };
      node.logFile = join(logs, `${id}.log`);
      await mkdir(node.dataDir, { recursive: true });
      await copyFile(seed, join(node.dataDir, 'kimiclaw.duckdb'), constants.COPYFILE_FICLONE);
      nodes.push(node);
    }
    const roles = [
      [
        '--role',
        'primary',
        ...ids
          .slice(1)
          .flatMap((id, i) => ['--replica', `${id}=http://127.0.0.1:${ports[i + 1]},${i === 0 ? 'sync' : 'async'}`]),
      ],
      ...ids.slice(1).map(() => ['--role', 'replica']),
    ];
    const startNodes = async (extra: string[]) => {
      nodes.forEach((n, i) => (n.args = [...roles[i]!, ...extra]));
      // The replicas first, so the primary finds them listening.
      for (const n of nodes.slice(1)) await n.start();
      await nodes[0]!.start();
    };
    await startNodes(options.nodeArgs);
    const config = parseConfig(
      {
        temporal: { address: temporal.address, taskQueue: 'kimiclaw-dr-bench-cluster' },
        storage: {
          endpoint: s3.endpoint,
          bucket: BUCKET,
          accessKeyId: CREDS.accessKey,
          secretAccessKey: CREDS.secretKey,
        },
        databases: [
          {
            name: 'kimiclaw',
            nodes: nodes.map((n, i) => ({
              id: n.id,
              url: n.url,
              dataDir: n.dataDir,
              ...(options.zones ? { zone: options.zones[i] ?? 'c' } : {}),
              ...(options.standbyRegion ? { region: i < 2 ? 'a' : 'b' } : {}),
            })),
          },
        ],
        // The drill's private stack has stores of its own: the real standby store is not written.
        ...(options.standbyRegion
          ? {
              regions: {
                primary: 'a',
                standby: [
                  {
                    name: 'b',
                    storage: {
                      endpoint: s3.endpoint,
                      bucket: `${BUCKET}-b`,
                      accessKeyId: CREDS.accessKey,
                      secretAccessKey: CREDS.secretKey,
                    },
                  },
                ],
              },
            }
          : {}),
        metrics: { port: 0 },
        nodeAuth: { token: control },
        cluster: { configCenter: { kind: 'etcd', endpoints: [etcd.endpoint] } },
        ...options.config,
      },
      'bench cluster',
    );
    const worker = await startWorker({ config, sdkMetrics: false, serveMetrics: false });
    stops.push(() => worker.shutdown());
    const connection = await Connection.connect({ address: temporal.address });
    stops.push(() => connection.close());
    const client = new Client({ connection });
    const center = openConfigCenter(config.cluster.configCenter);
    stops.push(() => center.close());
    return {
      root,
      nodes,
      config,
      client,
      dr: new KimiclawDr(client, config),
      center,
      control: new NodeToken(control),
      events: new NodeToken(events),
      seedPath: seed,
      seedLsn,
      async restartNodes(extra) {
        for (const n of nodes) await n.stop();
        await startNodes(extra);
      },
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/** The highest LSN in a generated file, read before any node opens it. */
async function lastLsn(path: string): Promise<number> {
  const db = await openDatabase(path);
  try {
    const c = await db.connect();
    const rows = (await c.runAndReadAll('SELECT coalesce(max(lsn), 0)::VARCHAR FROM events')).getRows();
    c.closeSync();
    return Number(rows[0]?.[0]);
  } finally {
    db.close();
  }
}
