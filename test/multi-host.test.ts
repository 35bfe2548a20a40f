/**
 * Node work only on the node's host, proven on one machine. Two nodes of a replicated cluster,
 * each with its own data root and its own worker process (DR_NODES=node1, DR_NODES=node2), and a
 * control worker (DR_NODES=none) that owns no node directory. Tests run as root, which ignores
 * file permissions, so each worker runs in its own mount namespace in which every node directory
 * it must not touch is covered by a tripwire: an empty tmpfs (strictatime) holding only the bare
 * skeleton of a data root, so a listing of it moves its atime and a write leaves an entry.
 *
 * Backups of each tier, restores in place and to scratch, restoreTest, prune, the metrics loader,
 * a failover and a rewind all succeed (they could not if they needed a hidden directory: it reads
 * as empty there), and afterwards every tripwire, seen through /proc/<pid>/root of its worker, is
 * still empty with its atime and mtime unchanged. The namespaces die with the workers.
 */
import assert from 'node:assert/strict';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { readFile, readdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { WorkflowFailedError } from '@temporalio/client';
import { KimiclawDr } from '../src/client';
import { type ConfigCenter, openConfigCenter, readPrimary } from '../src/config-center';
import { sequencesOn, startClusterWriter } from '../src/dev/cluster-writer';
import { monitorWorkflowId, recoverWorkflowId } from '../src/failover/input';
import { startWriter } from '../src/node/writer';
import { fingerprintFile } from '../src/duckdb/verify';
import type { RestoreInput } from '../src/restore/input';
import type { BackupResult } from '../src/workflows/backup';
import type { restore, restoreTest } from '../src/workflows';
import type { RecoverNodeResult } from '../src/workflows/cluster';
import { BUCKET, EVENTS_CREDENTIAL, Harness, failureMessages, nodeHealth, runCli, waitFor } from './harness';

/** Why this machine cannot hide directories from a worker, or undefined when it can. */
function namespacesUnavailable(): string | undefined {
  try {
    execFileSync('sh', ['-c', 'command -v unshare'], { stdio: 'pipe' });
  } catch {
    return 'unshare (Debian package util-linux) is not on PATH';
  }
  const probe = mkdtempSync(join(tmpdir(), 'kimiclaw-ns-probe-'));
  try {
    execFileSync('unshare', ['--mount', '--propagation', 'private', 'mount', '-t', 'tmpfs', 'probe', probe], {
      stdio: 'pipe',
    });
    return undefined;
  } catch (err) {
    const why = (err as { stderr?: Buffer }).stderr?.toString().trim() || String(err);
    return `cannot mount a tmpfs in a new mount namespace (needs root or CAP_SYS_ADMIN): ${why}`;
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
}

const unavailable = namespacesUnavailable();
if (unavailable) {
  console.warn(`\n*** SKIPPED multi-host test: ${unavailable} ***\n`);
}

const KEY = '/services/kimiclaw/primary';
/** What a tripwire holds: the bare directories of a data root down to its L1 catalog. */
const SKELETON = ['backups', 'backups/kimiclaw', 'backups/kimiclaw/L1'];

const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

interface HostWorker {
  name: string;
  child: ChildProcess;
  pid: number;
  metricsUrl: string;
  /** Node directories covered by a tripwire in this worker's namespace. */
  hidden: string[];
  /** atime/mtime/ctime (ns) of each tripwire directory once the worker was up. */
  baseline: Map<string, string>;
}

void describe('node work only on the node host (a worker process per host)', { skip: unavailable }, () => {
  let h: Harness;
  let dr: KimiclawDr;
  let center: ConfigCenter;
  const workers: HostWorker[] = [];
  const dataDir = (i: number) => h.nodes[i]!.dataDir;
  const l1Dir = (i: number) => join(dataDir(i), 'backups', 'kimiclaw', 'L1');

  /** The worker's view of a path: through its own mount namespace. */
  const seenBy = (w: HostWorker, path: string) => `/proc/${w.pid}/root${path}`;

  async function tripwireTimes(w: HostWorker): Promise<Map<string, string>> {
    const times = new Map<string, string>();
    for (const dir of w.hidden) {
      for (const rel of ['', ...SKELETON]) {
        const s = await stat(seenBy(w, join(dir, rel)), { bigint: true });
        times.set(join(dir, rel), `atime ${s.atimeNs} mtime ${s.mtimeNs} ctime ${s.ctimeNs}`);
      }
    }
    return times;
  }

  /** A worker process in its own mount namespace, each hidden directory under an empty tmpfs. */
  async function spawnHostWorker(name: string, nodes: string, hidden: string[]): Promise<HostWorker> {
    const script = [
      'set -e',
      ...hidden.flatMap((dir) => [
        `mount -t tmpfs -o strictatime,mode=0755,size=1m kimiclaw-tripwire ${quote(dir)}`,
        ...SKELETON.map((rel) => `mkdir ${quote(join(dir, rel))}`),
      ]),
      'exec "$@"',
    ].join('\n');
    const child = h.spawnWorker({
      env: { DR_NODES: nodes },
      wrapper: ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', script, 'sh'],
    });
    const metricsUrl = await new Promise<string>((resolve, reject) => {
      let err = '';
      child.stderr?.setEncoding('utf8').on('data', (d: string) => (err += d));
      child.once('exit', (code) => reject(new Error(`worker ${name} exited with ${code}: ${err}`)));
      createInterface({ input: child.stdout! }).on('line', (line) => {
        if (!line.includes('"worker-started"')) return;
        resolve((JSON.parse(line) as { metrics: string }).metrics);
      });
    });
    const w: HostWorker = { name, child, pid: child.pid!, metricsUrl, hidden, baseline: new Map() };
    // The tripwire is what this worker sees: the node's files are there for us, not for it.
    const mounts = await readFile(`/proc/${w.pid}/mountinfo`, 'utf8');
    for (const dir of hidden) {
      assert.match(mounts, new RegExp(` ${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} .* - tmpfs kimiclaw-tripwire `));
      await stat(join(dir, 'kimiclaw.duckdb'));
      await assert.rejects(stat(seenBy(w, join(dir, 'kimiclaw.duckdb'))), { code: 'ENOENT' });
    }
    w.baseline = await tripwireTimes(w);
    workers.push(w);
    return w;
  }

  async function metricsOf(w: HostWorker): Promise<string> {
    return (await fetch(w.metricsUrl)).text();
  }

  let seq = 0;
  function startRestore(input: RestoreInput) {
    return h.client.workflow.start<typeof restore>('restore', {
      taskQueue: h.taskQueue,
      workflowId: `multi-host-restore-${Date.now()}-${seq++}`,
      args: [input],
    });
  }

  async function write(ms: number): Promise<number> {
    const primary = (await readPrimary(center, KEY)).record;
    const url = primary?.url ?? h.nodes[0]!.url;
    const writer = startWriter({ url, token: EVENTS_CREDENTIAL, eventsPerBatch: 10, intervalMs: 20 });
    await new Promise((r) => setTimeout(r, ms));
    const stats = await writer.stop();
    assert.equal(stats.errors, 0);
    return stats.lastLsn ?? 0;
  }

  async function archivedThrough(lsn: number): Promise<void> {
    await waitFor(`the archive to reach LSN ${lsn}`, async () => {
      const objects = await readdir(join(h.dir, 's3', BUCKET, 'kimiclaw-dr', 'kimiclaw', 'log')).catch(() => []);
      const ends = objects.map((o) => Number(o.split('-')[1]?.split('.')[0] ?? 0));
      return Math.max(0, ...ends) >= lsn;
    });
  }

  async function manifestOf(path: string): Promise<{ bad?: { reason: string } }> {
    return JSON.parse(await readFile(join(path, 'manifest.json'), 'utf8')) as { bad?: { reason: string } };
  }

  let l1a: BackupResult;
  let l1b: BackupResult;
  let l2: BackupResult;

  before(async () => {
    h = await Harness.start({
      nodes: ['node1', 'node2'],
      cluster: true,
      worker: false,
      config: (base) => ({ ...base, archive: { interval: '1s', segmentMaxEvents: 2000 } }),
    });
    dr = await KimiclawDr.connect(h.config);
    center = openConfigCenter(h.config.cluster.configCenter);
    await Promise.all([
      spawnHostWorker('node1 host', 'node1', [dataDir(1)]),
      spawnHostWorker('node2 host', 'node2', [dataDir(0)]),
      spawnHostWorker('control host', 'none', [dataDir(0), dataDir(1)]),
    ]);
    await dr.ensureLogArchive('kimiclaw');
    await waitFor('replica in sync', async () => (await nodeHealth(h.nodes[0]!.url)).syncState === 'in-sync');
  });
  after(async () => {
    await center?.close();
    await h?.stop();
  });

  void test('backups of each tier: L1 on the disk of the node that took it, L2 and L3 in the bucket', async () => {
    await write(800);
    l1a = await (await dr.startBackup({ tier: 'L1' })).result();
    assert.equal(l1a.node, 'node1');
    assert.ok(l1a.location.startsWith(l1Dir(0)), l1a.location);
    l2 = await (await dr.startBackup({ tier: 'L2' })).result();
    const l3 = await (await dr.startBackup({ tier: 'L3' })).result();
    assert.equal(l3.location, `s3://${BUCKET}/kimiclaw-dr/kimiclaw/L3/${l3.backupId}/kimiclaw.duckdb.zst`);
    await write(800);
    l1b = await (await dr.startBackup({ tier: 'L1', node: 'node2' })).result();
    assert.equal(l1b.node, 'node2');
    assert.ok(l1b.location.startsWith(l1Dir(1)), l1b.location);
    assert.ok(l1b.lsn > l1a.lsn);
    assert.deepEqual(await readdir(l1Dir(0)), [l1a.backupId]);
    assert.deepEqual(await readdir(l1Dir(1)), [l1b.backupId]);
  });

  void test('restoreTest of L1 asks each node for its newest L1 and tests it on that node', async () => {
    const result = await h.client.workflow.execute<typeof restoreTest>('restoreTest', {
      taskQueue: h.taskQueue,
      workflowId: `multi-host-restore-test-${Date.now()}`,
      args: [{ tier: 'L1' }],
    });
    assert.equal(result.backupId, l1b.backupId, 'the newest L1 of the cluster is on node2');
    assert.equal(result.rows, l1b.rows);
    const l2Test = await h.client.workflow.execute<typeof restoreTest>('restoreTest', {
      taskQueue: h.taskQueue,
      workflowId: `multi-host-restore-test-l2-${Date.now()}`,
      args: [{ tier: 'L2' }],
    });
    assert.equal(l2Test.backupId, l2.backupId);
  });

  void test("scratch restore on node2 from its own L1; node1 is never restored from node2's L1", async () => {
    const result = await (
      await startRestore({ backupId: l1b.backupId, node: 'node2', toLsn: l1b.lsn, target: 'scratch' })
    ).result();
    assert.equal(result.node, 'node2');
    assert.equal(result.backupId, l1b.backupId);
    assert.ok(result.path?.startsWith(dataDir(1)), result.path);
    assert.equal((await fingerprintFile(result.path!)).rows, l1b.rows);

    const refused = await startRestore({ backupId: l1b.backupId, node: 'node1', target: 'scratch' });
    await assert.rejects(refused.result(), (err: unknown) => {
      assert.ok(err instanceof WorkflowFailedError);
      assert.match(
        failureMessages(err),
        new RegExp(`no backup ${l1b.backupId} on node node1 \\(an L1 backup is restored only on the node whose disk`),
      );
      return true;
    });
    const preview = await runCli(['restore', '--preview', '--node', 'node1', '--backup', 'latest', '--json'], h.env());
    assert.equal(preview.code, 0, preview.stderr);
    const { plan } = JSON.parse(preview.stdout) as { plan: { node: { id: string }; backup: { backupId: string } } };
    assert.equal(plan.node.id, 'node1');
    assert.notEqual(plan.backup.backupId, l1b.backupId, "node1's plan never sees node2's L1");
  });

  void test('restore in place on node1 from its own L1 and the archive: every acknowledged event', async () => {
    const head = (await nodeHealth(h.nodes[0]!.url)).lsn;
    await archivedThrough(head);
    const result = await (await startRestore({ backupId: l1a.backupId, node: 'node1' })).result();
    assert.equal(result.node, 'node1');
    assert.equal(result.tier, 'L1');
    assert.equal(result.backupId, l1a.backupId);
    assert.equal(result.finalLsn, head);
    assert.ok(result.movedAside?.startsWith(dataDir(0)), result.movedAside);
    assert.equal((await nodeHealth(h.nodes[0]!.url)).lsn, head);
    assert.equal((await manifestOf(join(l1Dir(1), l1b.backupId))).bad, undefined, 'nothing was rewound');
  });

  void test("prune runs in each catalog where it lives: each node's L1 by its own worker", async () => {
    const dry = await runCli(['backups', 'prune', '--tier', 'L1', '--dry-run', '--json'], h.env());
    assert.equal(dry.code, 0, dry.stderr);
    const planned = JSON.parse(dry.stdout) as Array<{
      node: string;
      location: string;
      kept: Array<{ backupId: string }>;
    }>;
    assert.deepEqual(
      planned.map((p) => [p.node, p.location, p.kept.map((k) => k.backupId)]),
      [
        ['node1', join(dataDir(0), 'backups'), [l1a.backupId]],
        ['node2', join(dataDir(1), 'backups'), [l1b.backupId]],
      ],
    );
    const real = await runCli(['backups', 'prune', '--tier', 'L1', '--node', 'node2'], h.env());
    assert.equal(real.code, 0, real.stderr);
    assert.match(real.stdout, new RegExp(`\\(node node2\\)\\n  deleted: nothing\\n  kept ${l1b.backupId}`));
    const l2Prune = await runCli(['backups', 'prune', '--tier', 'L2', '--json'], h.env());
    assert.equal(l2Prune.code, 0, l2Prune.stderr);
    assert.equal(
      (JSON.parse(l2Prune.stdout) as Array<{ location: string }>)[0]?.location,
      `s3://${BUCKET}/kimiclaw-dr`,
    );
  });

  void test('the metrics loader reads L1 only from the local node; the control worker reports no L1', async () => {
    const l1Gauge = /^backup_last_success_timestamp\{database="kimiclaw",tier="L1"\} (\S+)$/m;
    // A second worker for node1's host, started now: its gauges come from the catalog alone.
    const restarted = await spawnHostWorker('node1 host (restarted)', 'node1', [dataDir(1)]);
    const loaded = await waitFor(
      'L1 gauge loaded from the catalog',
      async () => l1Gauge.exec(await metricsOf(restarted)) ?? undefined,
    );
    const seconds = Number(loaded[1]);
    assert.ok(
      seconds >= Date.parse(l1a.startedAt) / 1000 && seconds <= Date.parse(l1a.completedAt) / 1000,
      `node1's newest L1 (${l1a.startedAt}), not node2's (${l1b.startedAt}): ${new Date(seconds * 1000).toISOString()}`,
    );
    assert.match(await metricsOf(restarted), /^backup_last_success_timestamp\{database="kimiclaw",tier="L2"\} \d/m);
    const node2 = workers.find((w) => w.name === 'node2 host')!;
    const live = l1Gauge.exec(await metricsOf(node2));
    assert.ok(live && Number(live[1]) >= Date.parse(l1b.startedAt) / 1000, 'node2 reports its own L1 backup');
    const control = workers.find((w) => w.name === 'control host')!;
    assert.doesNotMatch(await metricsOf(control), l1Gauge);
  });

  void test('failover with a worker per host: no acknowledged write lost, the old primary rejoins', async () => {
    const monitor = await dr.ensureMonitor();
    await waitFor('replica in sync', async () => (await nodeHealth(h.nodes[0]!.url)).syncState === 'in-sync');
    const writer = startClusterWriter(center, { token: EVENTS_CREDENTIAL, key: KEY });
    await waitFor('writes flowing', async () => writer.acked.length >= 200);
    await h.nodes[0]!.stop('SIGKILL');
    await waitFor('writes on the new primary', async () => writer.acks.filter((a) => a.node === 'node2').length > 20);
    await writer.stop();
    assert.equal((await readPrimary(center, KEY)).record?.node, 'node2');
    const present = await sequencesOn(h.nodes[1]!.url, EVENTS_CREDENTIAL);
    assert.deepEqual(
      writer.acked.filter((s) => !present.has(s)),
      [],
      'acknowledged writes missing on the new primary',
    );
    await h.nodes[0]!.start();
    const recovered = (await h.client.workflow
      .getHandle(recoverWorkflowId('kimiclaw', 'node1'))
      .result()) as RecoverNodeResult;
    assert.equal(recovered.role, 'replica');
    assert.equal(monitor.workflowId, monitorWorkflowId('kimiclaw'));
    await monitor.terminate('the rewind below is not a failure');
  });

  void test("a rewind marks later backups bad in every catalog: node1's L1 by node1's own worker", async () => {
    await write(500);
    const later = await (await dr.startBackup({ tier: 'L1', node: 'node1' })).result();
    const laterL2 = await (await dr.startBackup({ tier: 'L2' })).result();
    assert.ok(later.lsn > l1b.lsn && laterL2.lsn > l1b.lsn);
    const result = await (await startRestore({ backupId: l1b.backupId, node: 'node2', toLsn: l1b.lsn })).result();
    assert.equal(result.finalLsn, l1b.lsn);
    const reason = /holds history after LSN \d+, abandoned by restore/;
    assert.match((await manifestOf(join(l1Dir(0), later.backupId))).bad?.reason ?? '', reason);
    const l2Manifest = join(h.dir, 's3', BUCKET, 'kimiclaw-dr', 'kimiclaw', 'L2', laterL2.backupId);
    assert.match((await manifestOf(l2Manifest)).bad?.reason ?? '', reason);
    assert.equal((await manifestOf(join(l1Dir(0), l1a.backupId))).bad, undefined, 'older backups stay good');
    assert.equal((await manifestOf(join(l1Dir(1), l1b.backupId))).bad, undefined);
  });

  void test("no worker opened another node's directory: every tripwire is empty and untouched", async () => {
    assert.equal(workers.length, 4);
    for (const w of workers) {
      assert.equal(w.child.exitCode, null, `${w.name} is still running`);
      // Times first: listing a directory below moves its atime.
      assert.deepEqual(await tripwireTimes(w), w.baseline, `${w.name}: a tripwire directory was read or written`);
      for (const dir of w.hidden) {
        const entries = await readdir(seenBy(w, dir), { recursive: true });
        assert.deepEqual(entries.sort(), SKELETON, `${w.name}: something was created under the tripwire at ${dir}`);
      }
    }
  });
});
