/**
 * npm run bench:restore [-- --size 1GiB --rounds 3 --dir /tmp/bench1g --lag-seconds 60]
 *
 * On an events database of --size, in one run:
 *   (a) the DR plan's restore pipeline: download the gzip backup, gunzip, open it with DuckDB and
 *       count the events;
 *   (b) the `restore` workflow in place (newest verified backup + archived log, swap, health
 *       check), several rounds each; medians, MB/s, the ratio and the measured RTO;
 *   (c) the same from an L1 snapshot on the node's disk (what it picks when one is there);
 * then the log archive's lag under a steady write load: for sampled LSNs, the time from the
 * node acknowledging it to its segment being in the object store (p50/p99/max).
 */
import { spawn } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { openDatabase } from '../src/duckdb/open';
import { NodeClient } from '../src/node-client';
import { startWriter } from '../src/node/writer';
import { parseSegmentKey } from '../src/restore/segments';
import { Stores } from '../src/storage/stores';
import type { restore } from '../src/workflows';
import { BUCKET, MB, log, startBenchEnv } from './env';
import { activityDurations, median, medianSteps } from './history';

const { values: args } = parseArgs({
  options: {
    size: { type: 'string', default: '1GiB' },
    rounds: { type: 'string', default: '3' },
    dir: { type: 'string' },
    'lag-seconds': { type: 'string', default: '60' },
  },
});

const percentile = (v: number[], p: number) => {
  const s = [...v].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function run(command: string, argv: string[], stdout?: string): Promise<void> {
  const child = spawn(command, argv, { stdio: ['ignore', stdout ? 'pipe' : 'ignore', 'inherit'] });
  const exited = new Promise<void>((resolve, reject) =>
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${command} exit ${code}`)))),
  );
  await Promise.all([stdout ? pipeline(child.stdout!, createWriteStream(stdout)) : undefined, exited]);
}

/** The plan's check: `SELECT COUNT(*) FROM events` on the restored file. */
async function countEvents(path: string): Promise<number> {
  const db = await openDatabase(path);
  try {
    const c = await db.connect();
    const rows = (await c.runAndReadAll('SELECT count(*)::VARCHAR FROM events')).getRows();
    c.closeSync();
    return Number(rows[0]?.[0]);
  } finally {
    db.close();
  }
}

async function main(): Promise<void> {
  const rounds = Number(args.rounds);
  log(`bench:restore — ${args.size} database, ${rounds} rounds each`);
  const env = await startBenchEnv({ dir: args.dir, size: args.size });
  const { root, dbPath, node, config, client, dr, s3Client } = env;
  const nodeClient = new NodeClient(node.id, node.url, config.nodeAuth.token);
  const stores = new Stores(config);

  try {
    const backup = await (await dr.startBackup({ tier: 'L2', reason: 'bench:restore' })).result();
    log(
      `backup ${backup.backupId}: ${(backup.bytesBefore / MB).toFixed(0)} MB → ${(backup.bytesAfter / MB).toFixed(0)} MB`,
    );
    await dr.ensureLogArchive('kimiclaw');

    // The plan's artifact: the same database, gzip -6 (prepared once, not timed).
    const gz = join(root, 'plan.db.gz');
    await run('gzip', ['-c', dbPath], gz);
    await new Upload({
      client: s3Client,
      params: { Bucket: BUCKET, Key: 'plan/kimiclaw.db.gz', Body: createReadStream(gz) },
    }).done();
    await rm(gz, { force: true });

    // (a) download, gunzip, open and count.
    const plan: number[] = [];
    for (let round = 1; round <= rounds; round++) {
      const started = performance.now();
      const dl = join(root, 'plan-restore.db.gz');
      const out = await s3Client.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'plan/kimiclaw.db.gz' }));
      await pipeline(out.Body as Readable, createWriteStream(dl));
      await run('gunzip', ['-c', dl], join(root, 'plan-restore.db'));
      const counted = await countEvents(join(root, 'plan-restore.db'));
      const seconds = (performance.now() - started) / 1000;
      plan.push(seconds);
      log(`  (a) plan restore round ${round}: ${seconds.toFixed(1)} s (${counted.toLocaleString('en-US')} rows)`);
      await rm(dl, { force: true });
      await rm(join(root, 'plan-restore.db'), { force: true });
    }

    // (b) the restore workflow, in place.
    const ours: number[] = [];
    const rtos: number[] = [];
    const steps: Array<Record<string, number>> = [];
    for (let round = 1; round <= rounds; round++) {
      const started = performance.now();
      const handle = await client.workflow.start<typeof restore>('restore', {
        taskQueue: config.temporal.taskQueue,
        workflowId: `bench-restore-${Date.now()}`,
        args: [{}],
      });
      const result = await handle.result();
      const seconds = (performance.now() - started) / 1000;
      steps.push(await activityDurations(handle));
      ours.push(seconds);
      rtos.push(result.rtoSeconds);
      log(
        `  (b) restore workflow round ${round}: ${seconds.toFixed(1)} s, RTO ${result.rtoSeconds.toFixed(1)} s (${result.backupId}, ${result.segmentsReplayed} segments, ${result.rows.toLocaleString('en-US')} rows)`,
      );
      await rm(result.movedAside!, { force: true });
    }
    log(`  (b) median per step: ${medianSteps(steps)}`);

    // (c) what a restore picks when the hourly L1 snapshot is there: no download at all.
    const l1 = await (await dr.startBackup({ tier: 'L1', reason: 'bench:restore' })).result();
    const fromL1: number[] = [];
    for (let round = 1; round <= rounds; round++) {
      const started = performance.now();
      const handle = await client.workflow.start<typeof restore>('restore', {
        taskQueue: config.temporal.taskQueue,
        workflowId: `bench-restore-l1-${Date.now()}`,
        args: [{ backupId: l1.backupId }],
      });
      const result = await handle.result();
      fromL1.push((performance.now() - started) / 1000);
      log(`  (c) restore from L1 round ${round}: ${fromL1.at(-1)!.toFixed(1)} s (${result.backupId})`);
      await rm(result.movedAside!, { force: true });
    }
    const bytes = backup.bytesBefore;
    log('');
    log(
      `(a) plan: download + gunzip + open/count  median ${median(plan).toFixed(1)} s  ${(bytes / MB / median(plan)).toFixed(0)} MB/s`,
    );
    log(
      `(b) restore workflow (in place)           median ${median(ours).toFixed(1)} s  ${(bytes / MB / median(ours)).toFixed(0)} MB/s`,
    );
    log(`speed-up (a)/(b)                          ${(median(plan) / median(ours)).toFixed(1)}×  (target ≥ 3×)`);
    log(
      `(c) restore workflow from L1 (local disk) median ${median(fromL1).toFixed(1)} s  ${(median(plan) / median(fromL1)).toFixed(1)}× the plan (it picks L1 when the hourly snapshot is there)`,
    );
    log(
      `measured RTO                              median ${median(rtos).toFixed(1)} s, max ${Math.max(...rtos).toFixed(1)} s  (target ≤ 30 s)`,
    );

    // Archive lag under a steady write load (default 10 s interval).
    const lagSeconds = Number(args['lag-seconds']);
    const acked = new Map<number, number>();
    const archived = new Map<number, number>();
    const writer = startWriter({
      token: config.nodeAuth.token,
      url: node.url,
      eventsPerBatch: 20,
      intervalMs: 50,
      onAck: (a) => acked.set(a.lsn, Date.now()),
    });
    const until = Date.now() + lagSeconds * 1000;
    let reached = 0;
    while (Date.now() < until + 15_000) {
      const segments = (await stores.s3().list('kimiclaw/log/'))
        .map((o) => parseSegmentKey(o.key))
        .filter((s) => s !== undefined);
      const through = Math.max(0, ...segments.map((s) => s.endLsn));
      const now = Date.now();
      for (let lsn = reached + 1; lsn <= through; lsn++) if (!archived.has(lsn)) archived.set(lsn, now);
      reached = Math.max(reached, through);
      if (Date.now() >= until && writer.stats().batches > 0) await writer.stop().catch(() => undefined);
      await sleep(250);
    }
    await writer.stop().catch(() => undefined);
    const lags = [...acked.entries()]
      .filter(([lsn]) => archived.has(lsn))
      .map(([lsn, at]) => (archived.get(lsn)! - at) / 1000);
    log(
      `archive lag (${lags.length} batches over ${lagSeconds} s, interval ${config.archive.interval / 1000} s): p50 ${percentile(lags, 50).toFixed(1)} s, p99 ${percentile(lags, 99).toFixed(1)} s, max ${Math.max(...lags).toFixed(1)} s  (target p99 ≤ 15 s)`,
    );
    log(`node at LSN ${(await nodeClient.health()).lsn}, archived through ${reached}`);
  } finally {
    stores.destroy();
    await env.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
