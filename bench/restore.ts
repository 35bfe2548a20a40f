/**
 * npm run bench:restore [-- --size 1GiB --rounds 3 --dir /tmp/bench1g --cases a,b,l1,lag,c,d]
 *   [--lag-seconds 60] [--cluster-rounds 1] [--scrub-interval 10s] [--scrub-budget-mibps 64]
 *   [--scrub-window-s 30] [--behind-s 15]
 *
 * On an events database of --size (1 GiB by default; generated once, kept in --dir), the cases
 * --cases names (all by default):
 *
 * One node (bench/env.ts startBenchEnv), --rounds rounds each, medians:
 *   (a)   the DR plan's restore pipeline: download the gzip backup, gunzip, open it with DuckDB and
 *         count the events;
 *   (b)   the `restore` workflow in place (newest verified backup + archived log, swap, health
 *         check); medians, MB/s, the ratio to (a) and the measured RTO;
 *   (l1)  the same from an L1 snapshot on the node's disk (what it picks when one is there);
 *   (lag) the log archive's lag under a steady write load: for sampled LSNs, the time from the
 *         node acknowledging it to its segment being in the object store (p50/p99/max).
 *
 * A two-node cluster (bench/env.ts startClusterBenchEnv: primary + synchronous replica seeded from
 * one generated file, etcd, the monitor and the log archiver running, production defaults for
 * probes, lease and archive interval), a ledger client writing through the primary record
 * throughout; --cluster-rounds rounds each (1 by default: each takes minutes at 1 GiB). See
 * bench/cluster.ts:
 *   (c)   damaged primary → rebuilt: 64 KiB in the middle of the primary's file overwritten; the
 *         time from the damage to its detection (the node's damage.at), to the failover recorded,
 *         to the first write acknowledged by the new primary, to the recover workflow done and the
 *         damaged node in sync again (the new primary's link to it in-sync after a bootstrap); the
 *         ledger must show 0 acknowledged events lost. Before it, the scrub's cost (the nodes run
 *         with --scrub-interval/--scrub-budget-mibps): its check's CPU s/GiB, and the write latency
 *         at the node's normal load (100-event batches every 100 ms) with the scrub off and on, in
 *         the same run, for --scrub-window-s each (0 skips it);
 *   (d)   point-in-time restore of the whole cluster: restore { toLsn } through the typed client,
 *         toLsn --behind-s seconds of writes behind the head; the workflow's duration and RTO, and
 *         the time until the replica is in sync again (in-sync, appliedLsn ≥ the primary's LSN);
 *         the ledger keeps every acknowledged event up to toLsn and after the restore.
 *
 * The process exits 1 when a ledger check fails.
 */
import { spawn } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
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
import { runClusterCases } from './cluster';
import { BUCKET, MB, log, startBenchEnv } from './env';
import { activityDurations, median, medianSteps } from './history';

const CASES = ['a', 'b', 'l1', 'lag', 'c', 'd'] as const;
type Case = (typeof CASES)[number];

const { values: args } = parseArgs({
  options: {
    size: { type: 'string', default: '1GiB' },
    rounds: { type: 'string', default: '3' },
    dir: { type: 'string' },
    cases: { type: 'string', default: CASES.join(',') },
    'lag-seconds': { type: 'string', default: '60' },
    'cluster-rounds': { type: 'string', default: '1' },
    'scrub-interval': { type: 'string', default: '10s' },
    'scrub-budget-mibps': { type: 'string', default: '64' },
    'scrub-window-s': { type: 'string', default: '30' },
    'behind-s': { type: 'string', default: '15' },
  },
});

function parseCases(text: string): Set<Case> {
  const asked = text
    .split(',')
    .map((c) => c.trim().toLowerCase())
    .filter(Boolean);
  const unknown = asked.filter((c) => !(CASES as readonly string[]).includes(c));
  if (unknown.length || asked.length === 0) {
    throw new Error(`--cases: unknown ${unknown.join(', ') || '(none given)'}; pick from ${CASES.join(',')}`);
  }
  return new Set(asked as Case[]);
}

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

/** (a), (b), (l1) and (lag) on one node; their summary lines. */
async function singleNodeCases(cases: Set<Case>, dir: string, rounds: number): Promise<string[]> {
  const env = await startBenchEnv({ dir, size: args.size });
  const { root, dbPath, node, config, client, dr, s3Client } = env;
  const nodeClient = new NodeClient(node.id, node.url, config.nodeAuth.token);
  const stores = new Stores(config);
  const summary: string[] = [];

  try {
    const backup = await (await dr.startBackup({ tier: 'L2', reason: 'bench:restore' })).result();
    log(
      `backup ${backup.backupId}: ${(backup.bytesBefore / MB).toFixed(0)} MB → ${(backup.bytesAfter / MB).toFixed(0)} MB`,
    );
    await dr.ensureLogArchive('kimiclaw');
    const bytes = backup.bytesBefore;

    // (a) download, gunzip, open and count.
    const plan: number[] = [];
    if (cases.has('a')) {
      // The plan's artifact: the same database, gzip -6 (prepared once, not timed).
      const gz = join(root, 'plan.db.gz');
      await run('gzip', ['-c', dbPath], gz);
      await new Upload({
        client: s3Client,
        params: { Bucket: BUCKET, Key: 'plan/kimiclaw.db.gz', Body: createReadStream(gz) },
      }).done();
      await rm(gz, { force: true });
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
      summary.push(
        `(a) plan: download + gunzip + open/count  median ${median(plan).toFixed(1)} s  ${(bytes / MB / median(plan)).toFixed(0)} MB/s`,
      );
    }

    // (b) the restore workflow, in place.
    if (cases.has('b')) {
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
          `  (b) restore workflow round ${round}: ${seconds.toFixed(1)} s, RTO ${result.rtoSeconds.toFixed(1)} s (${result.backupId}, ${result.segmentsReplayed} segments, ${(result.rows ?? 0).toLocaleString('en-US')} rows)`,
        );
        await rm(result.movedAside!, { force: true });
      }
      log(`  (b) median per step: ${medianSteps(steps)}`);
      summary.push(
        `(b) restore workflow (in place)           median ${median(ours).toFixed(1)} s  ${(bytes / MB / median(ours)).toFixed(0)} MB/s`,
      );
      if (plan.length) {
        summary.push(
          `speed-up (a)/(b)                          ${(median(plan) / median(ours)).toFixed(1)}×  (target ≥ 3×)`,
        );
      }
      summary.push(
        `measured RTO                              median ${median(rtos).toFixed(1)} s, max ${Math.max(...rtos).toFixed(1)} s  (target ≤ 30 s)`,
      );
    }

    // (l1) what a restore picks when the hourly L1 snapshot is there: no download at all.
    if (cases.has('l1')) {
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
        log(`  (l1) restore from L1 round ${round}: ${fromL1.at(-1)!.toFixed(1)} s (${result.backupId})`);
        await rm(result.movedAside!, { force: true });
      }
      summary.push(
        `(l1) restore workflow from L1 (local disk) median ${median(fromL1).toFixed(1)} s` +
          (plan.length ? `  ${(median(plan) / median(fromL1)).toFixed(1)}× the plan` : '') +
          ' (it picks L1 when the hourly snapshot is there)',
      );
    }

    // Archive lag under a steady write load (default 10 s interval).
    if (cases.has('lag')) {
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
      summary.push(
        `(lag) archive lag (${lags.length} batches over ${lagSeconds} s, interval ${config.archive.interval / 1000} s): p50 ${percentile(lags, 50).toFixed(1)} s, p99 ${percentile(lags, 99).toFixed(1)} s, max ${Math.max(...lags).toFixed(1)} s  (target p99 ≤ 15 s)`,
      );
      log(`  (lag) node at LSN ${(await nodeClient.health()).lsn}, archived through ${reached}`);
    }
  } finally {
    stores.destroy();
    await env.stop();
  }
  return summary;
}

async function main(): Promise<void> {
  const cases = parseCases(args.cases);
  const rounds = Number(args.rounds);
  const clusterRounds = Number(args['cluster-rounds']);
  const single = (['a', 'b', 'l1', 'lag'] as const).filter((c) => cases.has(c));
  const cluster = (['c', 'd'] as const).filter((c) => cases.has(c));
  log(
    `bench:restore — ${args.size} database, cases ${[...cases].join(',')}` +
      (single.length ? `; ${single.join(',')}: ${rounds} rounds each` : '') +
      (cluster.length ? `; ${cluster.join(',')}: ${clusterRounds} round${clusterRounds === 1 ? '' : 's'} each` : ''),
  );
  const dir = args.dir ?? (await mkdtemp(join(tmpdir(), 'kimiclaw-bench-')));
  await mkdir(dir, { recursive: true });
  const summary: string[] = [];
  let failed = false;
  try {
    if (single.length) summary.push(...(await singleNodeCases(cases, dir, rounds)));
    if (cluster.length) {
      const result = await runClusterCases({
        size: args.size,
        dir,
        rounds: clusterRounds,
        damaged: cases.has('c'),
        pointInTime: cases.has('d'),
        scrubInterval: args['scrub-interval'],
        scrubBudgetMibps: args['scrub-budget-mibps'],
        scrubWindowMs: Number(args['scrub-window-s']) * 1000,
        behindMs: Number(args['behind-s']) * 1000,
      });
      summary.push(...result.summary);
      failed = result.failed;
    }
  } finally {
    if (!args.dir) await rm(dir, { recursive: true, force: true });
  }
  log('');
  log(`summary (${args.size})`);
  for (const line of summary) log(line);
  if (failed) process.exitCode = 1;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
