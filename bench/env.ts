/**
 * What every benchmark runs against, on loopback: a Temporal dev server, versitygw with a bucket,
 * one kimiclaw node on a generated events database (kept in --dir and reused), and a worker.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { KimiclawDr } from '../src/client';
import { parseConfig, type Config } from '../src/config';
import { NodeProcess } from '../src/dev/node-process';
import { newNodeToken } from '../src/dev/token-file';
import { createBucket, startTemporalDevServer, startVersitygw } from '../src/dev/servers';
import { generateDatabase, parseSize } from '../src/node/generate';
import { startWorker } from '../src/worker';

export const BUCKET = 'kimiclaw-backups';
export const MB = 1_000_000;
const CREDS = { accessKey: 'bench', secretKey: 'bench-secret-key' };

export function log(line: string): void {
  process.stdout.write(`${line}\n`);
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
  Runtime.install({ logger: new DefaultLogger('WARN') });
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
