/**
 * An isolated drill (the default target) end to end: the newest verified backup of a real
 * three-node cluster — node1 and node2 in zones a and b of region a, node3 in zone c of the standby
 * region b — and its archived log are restored to a private stack (its own Temporal dev server and
 * versitygw per region, an etcd member per zone and witnesses, node processes and a worker per
 * zone, started as a process of its own); orchestrator-down, zone-failure and region-failure run
 * there and measure RTO and RPO, and the stack is torn down. The real cluster is untouched: same
 * primary, same epoch, same node processes, no failover on the real Temporal, every write
 * acknowledged meanwhile still held by every node.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { WorkflowNotFoundError } from '@temporalio/client';
import type { KimiclawDr } from '../src/client';
import { type ConfigCenter, readPrimary } from '../src/config-center';
import { startClusterWriter, ledgerEventsOn } from '../src/dev/cluster-writer';
import { alive } from '../src/drill/detached';
import { formatReport } from '../src/drill/format';
import type { DrillReport } from '../src/drill/report';
import { listReports } from '../src/drill/report-store';
import { NodeClient } from '../src/node-client';
import { S3Store, createS3Client } from '../src/storage/s3';
import { type DrillCluster, Harness, archivedThrough, startDrillCluster, waitFor } from './harness';

const KEY = '/services/kimiclaw/primary';

void describe('drill: an isolated drill on a private stack restored from the backups', () => {
  let cluster: DrillCluster | undefined;
  let h: Harness;
  let center: ConfigCenter;
  let dr: KimiclawDr;

  before(async () => {
    cluster = await startDrillCluster({
      nodes: ['node1', 'node2', 'node3'],
      // Three zones, two regions: the private stack gets an etcd member per zone and witnesses
      // enough to outlive region a, a worker per zone, a Temporal server and a store per region.
      zones: ['a', 'b', 'c'],
      config: (base) => ({
        ...base,
        archive: { interval: '1s', segmentMaxEvents: 5_000 },
        databases: base.databases.map((db) => ({
          ...db,
          nodes: db.nodes.map((n) => ({ ...n, region: n.id === 'node3' ? 'b' : 'a' })),
        })),
        // The real cluster's standby store is not used by the drill: the stack has its own.
        regions: { primary: 'a', standby: [{ name: 'b', storage: { ...base.storage, bucket: 'kimiclaw-b' } }] },
      }),
    });
    ({ h, center, dr } = cluster);
  });
  after(async () => {
    await cluster?.stop();
  });

  void test('orchestrator-down, zone-failure and region-failure on the private stack: measured there, the stack torn down, the real cluster untouched', async () => {
    const token = h.config.nodeAuth.token;
    // Events before the backup, and after it (only the archived log brings those back).
    const writer = startClusterWriter(center, { token, batch: 10, pauseMs: 20 });
    while (writer.acked.length < 300) await new Promise((r) => setTimeout(r, 50));
    const backup = await (await dr.startBackup({ tier: 'L2', reason: 'before an isolated drill' })).result();
    const afterBackup = writer.acked.length;
    while (writer.acked.length < afterBackup + 200) await new Promise((r) => setTimeout(r, 50));
    // The writes acknowledged before the drill.
    const head = Math.max(...writer.acks.map((a) => a.lsn));
    // Archived (every second) before the drill: the private stack's restore reads the archive.
    const store = new S3Store(createS3Client(h.config.storage), h.config.storage);
    await waitFor('the archive to reach the head', async () => (await archivedThrough(store)) >= head);
    const before = (await readPrimary(center, KEY)).record!;
    const pids = h.nodes.map((n) => n.pid);
    const startedAt = Date.now();

    // The default target: isolated. The real cluster keeps taking writes throughout.
    const report = (await h.client.workflow
      .execute('drill', {
        taskQueue: h.config.temporal.taskQueue,
        workflowId: 'drill-isolated-1',
        args: [{ scenarios: ['orchestrator-down', 'zone-failure', 'region-failure'] }],
      })
      .catch((err: unknown) => {
        // A failed drill carries its report: print it, it says why.
        const failed = (err as { cause?: { details?: unknown[] } }).cause?.details?.[0] as DrillReport | undefined;
        if (failed) console.log(formatReport(failed));
        throw err;
      })
      .finally(() => writer.stop())) as DrillReport;
    console.log(formatReport(report));

    assert.equal(report.target, 'isolated');
    assert.equal(report.status, 'passed', formatReport(report));
    const stack = report.stack!;
    assert.equal(stack.backupId, backup.backupId, 'restored from the newest verified backup');
    assert.ok(stack.restoredLsn! >= head, `the archived log replayed to LSN ${stack.restoredLsn} ≥ ${head}`);
    assert.equal(stack.tornDown, true, stack.detail);
    // The primary killed with the stack's Temporal server and workers stopped for 15 s (and the
    // node's host gone with them): nothing fails over until they are back, and the RTO says so.
    // (single-node alone is drill.test.ts's, on the real cluster.)
    const o = report.scenarios[0]!;
    assert.equal(o.scenario, 'orchestrator-down');
    assert.match(o.phases.find((p) => p.name === 'inject')!.detail!, /Temporal server and workers stopped for 15 s/);
    assert.ok(o.measured!.rtoMs! > 15_000, `RTO ${o.measured!.rtoMs} ms includes the orchestrator's absence`);
    assert.deepEqual(o.measured!.rpo, { events: 0, spanMs: 0 });
    assert.ok(o.measured!.acknowledged > 20);
    assert.equal(o.heal!.healed, true);
    assert.ok(o.verdict.passed, o.verdict.reasons.join('; '));
    // Zone a (node1, its etcd member, its worker) killed at once: node2 in zone b takes over.
    const z = report.scenarios[1]!;
    assert.equal(z.scenario, 'zone-failure');
    assert.match(
      z.phases.find((p) => p.name === 'inject')!.detail!,
      /every process of zone a SIGKILLed at once \(node node1, etcd member a, worker a\)/,
    );
    assert.match(z.phases.find((p) => p.name === 'recover')!.detail!, /first write acknowledged by node2 at epoch/);
    assert.ok(z.measured!.rtoMs! > 0, `RTO ${z.measured!.rtoMs} ms`);
    assert.deepEqual(z.measured!.rpo, { events: 0, spanMs: 0 });
    assert.ok(z.measured!.acknowledged > 20);
    assert.equal(z.heal!.healed, true, z.heal!.detail);
    assert.ok(z.verdict.passed, z.verdict.reasons.join('; '));
    // Region a (its nodes, etcd members, workers, store and Temporal server) stopped at once; the
    // drill, on region b's Temporal server, moves the primary there with failoverRegion, and home
    // again with failbackRegion once region a is back.
    const r = report.scenarios[2]!;
    assert.equal(r.scenario, 'region-failure');
    assert.match(
      r.phases.find((p) => p.name === 'inject')!.detail!,
      /every process of region a stopped at once \(node node1, node node2, etcd member a, etcd member b, worker a, worker b, object store, Temporal server\)/,
    );
    assert.match(r.phases.find((p) => p.name === 'detect')!.detail!, /node1 does not answer/);
    assert.match(
      r.phases.find((p) => p.name === 'recover')!.detail!,
      /failoverRegion promoted node3 at epoch \d+ .*first write acknowledged by node3 at epoch/,
    );
    assert.ok(r.measured!.rtoMs! > 0, `RTO ${r.measured!.rtoMs} ms`);
    assert.ok(r.measured!.acknowledged > 20);
    // What region a acknowledged that node3 had not received is lost to the new history (kept
    // aside on node1): counted, and within the plan's 5 minutes.
    assert.ok(r.measured!.rpo.spanMs <= 5 * 60_000, JSON.stringify(r.measured!.rpo));
    assert.equal(r.heal!.healed, true, r.heal!.detail);
    assert.match(r.heal!.detail, /failbackRegion moved the primary node3 → node[12] at epoch/);
    assert.ok(r.verdict.passed, r.verdict.reasons.join('; '));

    // The private stack is gone: every process it ran, and its data.
    const drillDir = join(h.nodes.find((n) => n.id === stack.host)!.dataDir, 'drills', report.id);
    const info = JSON.parse(await readFile(join(drillDir, 'stack-info.json'), 'utf8')) as {
      pid: number;
      pids: Record<string, number>;
    };
    // Temporal and S3 per region, a worker and an etcd member per zone, two witnesses, three nodes.
    assert.ok(Object.keys(info.pids).length >= 15, JSON.stringify(info.pids));
    for (const [name, pid] of [['stack', info.pid], ...Object.entries(info.pids)] as const) {
      assert.equal(alive(pid), false, `${name} (pid ${pid}) still runs`);
    }
    assert.equal(existsSync(join(drillDir, 'stack')), false, 'the stack directory is removed');

    // The real cluster: the same primary at the same epoch, the same processes, no failover.
    const now = (await readPrimary(center, KEY)).record!;
    assert.deepEqual([now.node, now.epoch], [before.node, before.epoch]);
    assert.deepEqual(
      h.nodes.map((n) => n.pid),
      pids,
    );
    const failover = await h.client.workflow
      .getHandle('failover-kimiclaw')
      .describe()
      .catch((err: unknown) => (err instanceof WorkflowNotFoundError ? undefined : Promise.reject(err)));
    assert.ok(!failover || failover.startTime.getTime() < startedAt, 'no failover on the real cluster');
    // Every write acknowledged by the real cluster, during the drill too, is on every node (once
    // each knows the last batch acknowledged: a node serves acknowledged batches only, and a
    // replica learns of the last acknowledgement with the primary's next message).
    const last = Math.max(...writer.acks.map((a) => a.lsn));
    await waitFor('every node to know the last batch acknowledged', async () =>
      (await Promise.all(h.nodes.map((n) => new NodeClient(n.id, n.url, token).health()))).every(
        (x) => (x.ackedLsn ?? 0) >= last,
      ),
    );
    for (const n of h.nodes) {
      const held = new Set((await ledgerEventsOn(n.url, token)).map((e) => e.seq));
      const missing = writer.acked.filter((seq) => !held.has(seq));
      const where = writer.acks
        .filter((a) => a.seqs.some((seq) => !held.has(seq)))
        .map((a) => ({ ...a, seqs: a.seqs.length }));
      assert.equal(
        missing.length,
        0,
        `${n.id} misses ${missing.length} of ${writer.acked.length}: ${JSON.stringify(where)}`,
      );
    }
    const health = await new NodeClient('node1', h.nodes[0]!.url, token).health();
    assert.equal(health.role, 'primary');

    // Kept beside the backups, like every drill's report.
    const { reports } = await listReports(store);
    assert.ok(reports.some((r) => r.id === report.id && r.target === 'isolated'));
  });
});
