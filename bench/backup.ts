/**
 * npm run bench:backup [-- --size 1GiB --rounds 3 --dir /tmp/bench1g]
 *
 * Generates an events database with realistic JSON payloads, then in one run times
 *   (a) the DR plan's original pipeline: copy the file, gzip at its default level, upload with an
 *       S3 client,
 *   (c) the content fingerprint of a snapshot of that database, version 1 (DuckDB's hash()) and
 *       version 2 (MD5 over the canonical row encoding) alternately, as verification computes it
 *       (a read-only DuckDB in a child process), and
 *   (b) an L2 `backup` workflow end to end (snapshot, verify, zstd + SHA-256, upload, manifest,
 *       prune) against the same S3 server while the node keeps accepting writes,
 * several rounds each, and prints medians, MB/s, the ratios and the longest write stall.
 * With --dir, the generated database is kept there and reused by the next run.
 */
import { spawn } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { copyFile, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { Upload } from '@aws-sdk/lib-storage';
import type { FingerprintVersion } from '../src/duckdb/row-checksum';
import { fingerprintFile } from '../src/duckdb/verify';
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

/**
 * CPU seconds used so far by this process's finished children (Linux: cutime + cstime of
 * /proc/self/stat, in clock ticks of 1/100 s): what a fingerprint costs whatever else the
 * machine is running. Undefined where /proc is not there.
 */
async function childCpuSeconds(): Promise<number | undefined> {
  const text = await readFile('/proc/self/stat', 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  // Fields after "(comm)" start at field 3; cutime and cstime are fields 16 and 17.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[13]) + Number(fields[14])) / 100;
}

interface FingerprintTimes {
  bytes: number;
  /** Median wall seconds per version. */
  seconds: Record<FingerprintVersion, number>;
  /** Median CPU seconds per version (the reader's every thread), when measurable. */
  cpuSeconds: Record<FingerprintVersion, number> | undefined;
}

/**
 * Times fingerprintFile in each version on one consistent snapshot, the versions alternating
 * round by round so a busy neighbour slows both alike.
 */
async function timeFingerprints(nodeClient: NodeClient, dataDir: string, rounds: number): Promise<FingerprintTimes> {
  const path = join(dataDir, 'bench-fingerprint.duckdb');
  const snapshot = await nodeClient.snapshot(path);
  const wall: Record<FingerprintVersion, number[]> = { 1: [], 2: [] };
  const cpu: Record<FingerprintVersion, number[]> = { 1: [], 2: [] };
  try {
    for (let round = 1; round <= rounds; round++) {
      for (const version of [1, 2] as const) {
        const cpuBefore = await childCpuSeconds();
        const started = performance.now();
        const fp = await fingerprintFile(path, { version });
        const seconds = (performance.now() - started) / 1000;
        const cpuAfter = await childCpuSeconds();
        wall[version].push(seconds);
        const used = cpuBefore === undefined || cpuAfter === undefined ? undefined : cpuAfter - cpuBefore;
        if (used !== undefined) cpu[version].push(used);
        const cpuText = used === undefined ? '' : `, ${used.toFixed(2)} s CPU`;
        log(
          `  (c) fingerprint v${version} round ${round}: ${seconds.toFixed(2)} s${cpuText} (${fp.rows.toLocaleString('en-US')} rows)`,
        );
      }
    }
  } finally {
    await rm(path, { force: true });
  }
  return {
    bytes: snapshot.bytes,
    seconds: { 1: median(wall[1]), 2: median(wall[2]) },
    cpuSeconds: cpu[1].length > 0 ? { 1: median(cpu[1]), 2: median(cpu[2]) } : undefined,
  };
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

    // (c) The fingerprint a verification computes, both versions on the same snapshot. /stats
    // hashes every row too: the client waits as long as that takes on a busy machine.
    const nodeClient = new NodeClient(node.id, node.url, env.config.nodeAuth.token, 10 * 60_000);
    const fingerprints = await timeFingerprints(nodeClient, node.dataDir, rounds);

    // (b) The backup workflow, end to end, while a writer keeps posting batches.
    const ours: number[] = [];
    const stalls: number[] = [];
    let bytesBefore = 0;
    let bytesAfter = 0;
    const stepTimes: Array<Record<string, number>> = [];
    const writer = startWriter({ token: env.config.nodeAuth.token, url: node.url, eventsPerBatch: 50, intervalMs: 20 });
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
      plan.length
        ? `(a) plan: cp + gzip + upload  median ${planMedian.toFixed(1)} s  ${(bytesBefore / MB / planMedian).toFixed(0)} MB/s`
        : '(a) plan: cp + gzip + upload  skipped (--no-baseline)',
    );
    log(
      `(b) backup workflow (L2)      median ${oursMedian.toFixed(1)} s  ${(bytesBefore / MB / oursMedian).toFixed(0)} MB/s  (stored ${(bytesAfter / MB).toFixed(0)} MB, ${(bytesBefore / bytesAfter).toFixed(1)}×)`,
    );
    if (plan.length) log(`speed-up (a)/(b)             ${(planMedian / oursMedian).toFixed(1)}×  (target ≥ 5×)`);
    const gib = fingerprints.bytes / 1024 ** 3;
    const { seconds, cpuSeconds } = fingerprints;
    const perGiB = (version: FingerprintVersion): string =>
      `median ${seconds[version].toFixed(2)} s  ${(seconds[version] / gib).toFixed(2)} s/GiB` +
      (cpuSeconds ? `  CPU ${(cpuSeconds[version] / gib).toFixed(2)} s/GiB` : '');
    log(`(c) fingerprint v1 (hash())   ${perGiB(1)}  (snapshot of ${(fingerprints.bytes / MB).toFixed(0)} MB)`);
    log(`(c) fingerprint v2 (md5)      ${perGiB(2)}`);
    log(
      `(c) v2 / v1                   ${(seconds[2] / seconds[1]).toFixed(2)}× wall` +
        (cpuSeconds ? `, ${(cpuSeconds[2] / cpuSeconds[1]).toFixed(2)}× CPU` : ''),
    );
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
