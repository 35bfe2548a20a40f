/**
 * npm run bench:backup [-- --size 1GiB --rounds 3 --dir /tmp/bench1g]
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
import { createReadStream, createWriteStream } from 'node:fs';
import { copyFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { Upload } from '@aws-sdk/lib-storage';
import { NodeClient } from '../src/node-client';
import { startWriter } from '../src/node/writer';
import { BUCKET, MB, log, startBenchEnv } from './env';
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
async function gzipFile(src: string, dest: string): Promise<void> {
  const child = spawn('gzip', ['-c', src], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`gzip exit ${code}`))));
  });
  await Promise.all([pipeline(child.stdout, createWriteStream(dest)), exited]);
}

async function main(): Promise<void> {
  const rounds = Number(args.rounds);
  log(`bench:backup — ${args.size} database, ${rounds} rounds each`);
  const env = await startBenchEnv({ dir: args.dir, size: args.size });
  const { root, dbPath, node, dr, s3Client } = env;

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
    await env.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
