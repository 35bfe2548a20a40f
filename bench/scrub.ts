/**
 * What finding a damaged file costs, by the two methods issue 9 weighs (docs/node-api.md, "The
 * scrub"), on a generated events database (1 GiB by default):
 *
 *   (a) blocks: read the file's blocks and check DuckDB's checksums in the node (src/node/scrubber.ts);
 *   (b) snapshot: a consistent copy (writes paused) opened and read by DuckDB in a child process.
 *
 * For each: CPU seconds per GiB, and the write latency it adds to a writer at the node's normal
 * load (100-event batches every 100 ms) compared with no scrub at all. Then the time from 64 KiB
 * overwritten in the running node's file to the node reporting it damaged.
 *
 *   npm run bench:scrub -- [--size 1GiB] [--dir DIR (keeps the database for the next run)]
 *     [--window-s 30] [--budget-mibps 64] [--interval 10s]
 */
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { damageBlockInUse } from '../src/dev/damage';
import { NodeProcess } from '../src/dev/node-process';
import { newNodeToken } from '../src/dev/token-file';
import { fingerprintFile } from '../src/duckdb/verify';
import { NodeClient } from '../src/node-client';
import { NodeToken } from '../src/node-token';
import { generateDatabase, parseSize } from '../src/node/generate';
import { scrubFile, staticSubject } from '../src/node/scrubber';
import { log } from './env';
import { cpuSeconds, formatLatency, latencies } from './load';

const GIB = 1024 ** 3;
const MIB = 1024 ** 2;
const fmt = formatLatency;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      size: { type: 'string', default: '1GiB' },
      dir: { type: 'string' },
      'window-s': { type: 'string', default: '30' },
      'budget-mibps': { type: 'string', default: '64' },
      interval: { type: 'string', default: '10s' },
    },
  });
  const root = values.dir ?? (await mkdtemp(join(tmpdir(), 'kimiclaw-bench-scrub-')));
  const windowMs = Number(values['window-s']) * 1000;
  const budget = Number(values['budget-mibps']);
  const source = join(root, 'source.duckdb');
  await mkdir(root, { recursive: true });
  if (!existsSync(source)) {
    const made = await generateDatabase(source, { targetBytes: parseSize(values.size) });
    log(`generated ${made.rows.toLocaleString('en-US')} events, ${(made.bytes / MIB).toFixed(0)} MiB`);
  }
  const bytes = (await stat(source)).size;
  const gib = bytes / GIB;
  log(`database: ${(bytes / MIB).toFixed(0)} MiB`);

  // (a) in this process, unthrottled: the CPU the checks cost per GiB (page cache warm).
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const outcome = await scrubFile(staticSubject(source), 0);
  const aCpu = (process.cpuUsage(cpu0).user + process.cpuUsage(cpu0).system) / 1e6;
  const aWall = (performance.now() - t0) / 1000;
  if (outcome.kind !== 'ok') throw new Error(`the generated file did not scrub clean: ${JSON.stringify(outcome)}`);
  log(
    `(a) blocks:   ${(aCpu / gib).toFixed(2)} CPU s/GiB, ${(outcome.bytesChecked / MIB / aWall).toFixed(0)} MiB/s unthrottled ` +
      `(${outcome.blocksChecked} blocks in use, ${aWall.toFixed(2)} s)`,
  );

  const token = newNodeToken();
  const credential = new NodeToken(token);
  const node = new NodeProcess('node1', join(root, 'nodes'));
  node.env = { KIMICLAW_NODE_TOKENS: token };
  const live = join(node.dataDir, 'kimiclaw.duckdb');
  const restart = async (scrub: string[]) => {
    await node.stop();
    node.args = ['--role', 'primary', ...scrub];
    await node.start();
  };
  try {
    await mkdir(node.dataDir, { recursive: true });
    await rm(`${live}.wal`, { force: true });
    await copyFile(source, live);
    node.args = ['--role', 'primary', '--scrub-interval', '0'];
    await node.start();
    const client = new NodeClient('node1', node.url, credential, 30 * 60_000);
    const base0 = await cpuSeconds(node.pid!);
    const base = await latencies(node.url, credential, windowMs);
    const baseCpu = (await cpuSeconds(node.pid!)).own - base0.own;
    log(`no scrub:     write latency ${fmt(base)}; the node used ${baseCpu.toFixed(1)} CPU s in ${windowMs / 1000} s`);

    // (b) one consistent snapshot verified by DuckDB in a child process: its stall and CPU.
    const snapshotPath = join(node.dataDir, 'snapshots', 'scrub.duckdb');
    const nodeCpu0 = await cpuSeconds(node.pid!);
    const snap = await client.snapshot(snapshotPath);
    const nodeCpu = (await cpuSeconds(node.pid!)).own - nodeCpu0.own;
    const child0 = await cpuSeconds('self');
    const v0 = performance.now();
    await fingerprintFile(snapshotPath);
    const childCpu = (await cpuSeconds('self')).children - child0.children;
    log(
      `(b) snapshot: write stall ${snap.stallMs.toFixed(0)} ms per pass; DuckDB in a child ${(childCpu / gib).toFixed(2)} CPU s/GiB ` +
        `(${((performance.now() - v0) / 1000).toFixed(1)} s); the node ${nodeCpu.toFixed(2)} CPU s for the copy ` +
        `(including its own block check of the copy, ~(a))`,
    );
    const bLoad = await latencies(node.url, credential, windowMs, async () => {
      await client.snapshot(snapshotPath);
      await fingerprintFile(snapshotPath);
    });
    log(`(b) snapshot: write latency with passes back to back ${fmt(bLoad)}`);
    await rm(snapshotPath, { force: true });

    // (a) in the node at its budget, passes back to back.
    await restart(['--scrub-interval', '1s', '--scrub-budget-mibps', String(budget)]);
    const aNode0 = await cpuSeconds(node.pid!);
    const aLoad = await latencies(node.url, credential, windowMs);
    const aNodeCpu = (await cpuSeconds(node.pid!)).own - aNode0.own;
    log(
      `(a) blocks:   write latency while scrubbing at ${budget} MiB/s ${fmt(aLoad)}; the node used ${aNodeCpu.toFixed(1)} CPU s ` +
        `in ${windowMs / 1000} s (writes included: ${(aNodeCpu - baseCpu).toFixed(1)} s more than without the scrub)`,
    );

    // Damage → detection, at --interval.
    await restart(['--scrub-interval', values.interval, '--scrub-budget-mibps', String(budget)]);
    await sleep(1_000);
    const damage = await damageBlockInUse(live);
    const damagedAt = performance.now();
    for (;;) {
      const h = await client.health();
      if (h.status === 'damaged') break;
      await sleep(100);
    }
    log(
      `detection:    64 KiB at block ${damage.blockId} overwritten → damaged after ${((performance.now() - damagedAt) / 1000).toFixed(1)} s ` +
        `(interval ${values.interval}, budget ${budget} MiB/s)`,
    );
  } finally {
    await node.stop('SIGKILL');
    await rm(join(root, 'nodes'), { recursive: true, force: true });
    if (!values.dir) await rm(root, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
