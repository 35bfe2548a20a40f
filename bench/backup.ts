/**
 * npm run bench:backup [-- --size 1GiB --rounds 3]
 *
 * Generates an events database with realistic JSON payloads, then in one run times
 *   (a) the DR plan's original pipeline: copy the file, gzip at its default level, upload with an
 *       S3 client, and
 *   (b) an L2 `backup` workflow end to end (snapshot, verify, zstd + SHA-256, upload, manifest,
 *       prune) against the same S3 server while the node keeps accepting writes,
 * several rounds each, and prints medians, MB/s, the ratio and the longest write stall.
 * With --dir, the generated database is kept there and reused by the next run.
 */
import { spawn } from 'node:child_process';
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { KimiclawDr } from '../src/client';
import { parseConfig } from '../src/config';
import { NodeProcess } from '../src/dev/node-process';
import { createBucket, startTemporalDevServer, startVersitygw } from '../src/dev/servers';
import { generateDatabase, parseSize } from '../src/node/generate';
import { NodeClient } from '../src/node-client';
import { startWriter } from '../src/node/writer';
import { startWorker } from '../src/worker';
import { activityDurations, median, medianSteps } from './history';

const { values: args } = parseArgs({
  options: {
    size: { type: 'string', default: '1GiB' },
    rounds: { type: 'string', default: '3' },
    dir: { type: 'string' },
    /** Skip (a), to look at (b) alone while tuning. */
    'no-baseline': { type: 'boolean', default: false },
  },
});
const CREDS = { accessKey: 'bench', secretKey: 'bench-secret-key' };
const BUCKET = 'kimiclaw-backups';
const MB = 1_000_000;

function log(line: string): void {
  process.stdout.write(`${line}\n`);
}

async function gzipFile(src: string, dest: string): Promise<void> {
  const child = spawn('gzip', ['-c', src], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`gzip exit ${code}`))));
  });
  await Promise.all([pipeline(child.stdout, createWriteStream(dest)), exited]);
}

async function main(): Promise<void> {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const targetBytes = parseSize(args.size);
  const rounds = Number(args.rounds);
  const root = args.dir ?? (await mkdtemp(join(tmpdir(), 'kimiclaw-bench-')));
  await mkdir(root, { recursive: true });
  log(`bench:backup — ${args.size} database, ${rounds} rounds each, work dir ${root}`);

  const [temporal, s3] = await Promise.all([
    startTemporalDevServer({ uiPort: false }),
    startVersitygw({ dir: join(root, 's3'), ...CREDS }),
  ]);
  await createBucket(s3.endpoint, CREDS, BUCKET);
  const node = new NodeProcess('node1', join(root, 'nodes'));
  await mkdir(node.dataDir, { recursive: true });
  const dbPath = join(node.dataDir, 'kimiclaw.duckdb');
  if (existsSync(dbPath)) {
    log(`reusing ${dbPath} (${((await stat(dbPath)).size / MB).toFixed(0)} MB)`);
  } else {
    const generated = await generateDatabase(dbPath, { targetBytes });
    log(
      `generated ${generated.rows.toLocaleString('en-US')} events, ${(generated.bytes / MB).toFixed(0)} MB in ${(generated.durationMs / 1000).toFixed(1)} s`,
    );
  }
  await node.start();

  const s3Client = new S3Client({
    endpoint: s3.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: CREDS.accessKey, secretAccessKey: CREDS.secretKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
  });
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
    },
    'bench',
  );
  const worker = await startWorker({ config, sdkMetrics: false });
  const connection = await Connection.connect({ address: temporal.address });
  const dr = new KimiclawDr(new Client({ connection }), config);

  try {
    // (a) The plan's pipeline: cp, gzip (default level 6), upload.
    const plan: number[] = [];
    for (let round = 1; round <= (args['no-baseline'] ? 0 : rounds); round++) {
      const copy = join(root, `plan-${round}.db`);
      const started = performance.now();
      await copyFile(dbPath, copy);
      await gzipFile(copy, `${copy}.gz`);
      await new Upload({
        client: s3Client,
        params: { Bucket: BUCKET, Key: `plan/daily/plan-${round}.db.gz`, Body: createReadStream(`${copy}.gz`) },
      }).done();
      const seconds = (performance.now() - started) / 1000;
      const gzBytes = (await stat(`${copy}.gz`)).size;
      plan.push(seconds);
      log(`  (a) plan pipeline round ${round}: ${seconds.toFixed(1)} s (gzip → ${(gzBytes / MB).toFixed(0)} MB)`);
      await rm(copy, { force: true });
      await rm(`${copy}.gz`, { force: true });
    }

    // (b) The backup workflow, end to end, while a writer keeps posting batches.
    const nodeClient = new NodeClient(node.id, node.url);
    const ours: number[] = [];
    const stalls: number[] = [];
    let bytesBefore = 0;
    let bytesAfter = 0;
    const stepTimes: Array<Record<string, number>> = [];
    const writer = startWriter({ url: node.url, eventsPerBatch: 50, intervalMs: 20 });
    for (let round = 1; round <= rounds; round++) {
      const started = performance.now();
      const handle = await dr.startBackup({ tier: 'L2', reason: `bench round ${round}` });
      const result = await handle.result();
      const seconds = (performance.now() - started) / 1000;
      stepTimes.push(await activityDurations(handle));
      ours.push(seconds);
      stalls.push(result.writeStallMs);
      bytesBefore = result.bytesBefore;
      bytesAfter = result.bytesAfter;
      log(
        `  (b) backup workflow round ${round}: ${seconds.toFixed(1)} s (${(result.bytesBefore / MB).toFixed(0)} MB → ${(result.bytesAfter / MB).toFixed(0)} MB zstd, verified, writes stalled ${result.writeStallMs.toFixed(0)} ms)`,
      );
    }
    const written = await writer.stop();
    log(`  (b) median per step: ${medianSteps(stepTimes)}`);
    const nodeStats = await nodeClient.stats();

    const planMedian = plan.length ? median(plan) : NaN;
    const oursMedian = median(ours);
    log('');
    log(
      `source database              ${(bytesBefore / MB).toFixed(0)} MB, ${written.events.toLocaleString('en-US')} events written during (b), ${written.errors} write errors`,
    );
    log(
      `(a) plan: cp + gzip + upload  median ${planMedian.toFixed(1)} s  ${(bytesBefore / MB / planMedian).toFixed(0)} MB/s`,
    );
    log(
      `(b) backup workflow (L2)      median ${oursMedian.toFixed(1)} s  ${(bytesBefore / MB / oursMedian).toFixed(0)} MB/s  (stored ${(bytesAfter / MB).toFixed(0)} MB, ${(bytesBefore / bytesAfter).toFixed(1)}×)`,
    );
    log(`speed-up (a)/(b)             ${(planMedian / oursMedian).toFixed(1)}×  (target ≥ 5×)`);
    log(
      `longest write stall          snapshot lock ${Math.max(...stalls).toFixed(0)} ms, node-observed ${nodeStats.maxWriteStallMs?.toFixed(0) ?? '?'} ms, writer max latency ${written.maxLatencyMs.toFixed(0)} ms  (target ≤ 2000 ms)`,
    );
  } finally {
    await worker.shutdown();
    await connection.close();
    s3Client.destroy();
    await node.stop();
    await Promise.all([temporal.stop(), s3.stop()]);
    if (args.dir) await rm(join(root, 's3'), { recursive: true, force: true });
    else await rm(root, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
