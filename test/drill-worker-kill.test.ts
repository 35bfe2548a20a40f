/**
 * A drill survives the loss of the worker running it: the only worker process (control queue and
 * both nodes' queues) is SIGKILLed right after the drill killed the primary, in the middle of the
 * fault phase. A new worker process picks the workflow up from its history: the drill's write load
 * (a process of its own) went on writing its ledger, the failover happens, the drill resumes,
 * heals back to the starting topology and measures from the ledger that survived.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { type ConfigCenter, openConfigCenter, readPrimary } from '../src/config-center';
import { isLive, readLease } from '../src/config-center/lease';
import type { DrillReport } from '../src/drill/report';
import { Harness, nodeHealth, recordFirstPrimary, startDrillUntilFault, startMonitor, superviseNodes } from './harness';

const KEY = '/services/kimiclaw/primary';

void describe('drill: the worker SIGKILLed in the middle of the fault phase', () => {
  let h: Harness;
  let center: ConfigCenter;
  let worker: ChildProcess;
  let stopSupervising: (() => void) | undefined;

  before(async () => {
    h = await Harness.start({ nodes: ['node1', 'node2'], cluster: true, worker: false });
    center = openConfigCenter(h.config.cluster.configCenter);
    await recordFirstPrimary(h, center, KEY);
    worker = await h.spawnReadyWorker();
    await startMonitor(h.client, h.config.temporal.taskQueue);
    // Slower than the failover: the killed primary is restarted only once a new worker's monitor
    // has had time to fail over (with no worker at all, a restarted node simply goes on as primary).
    stopSupervising = superviseNodes(h.nodes, 15_000);
  });
  after(async () => {
    stopSupervising?.();
    await center?.close();
    await h?.stop();
  });

  void test('a new worker resumes the drill: it heals, measures from the surviving ledger, and loses nothing', async () => {
    // Positive evidence that the fault was injected: the primary's process is gone.
    const handle = await startDrillUntilFault(h, 'drill-worker-killed');
    worker.kill('SIGKILL');
    await new Promise((resolve) => worker.once('exit', resolve));
    const killedAt = Date.now();
    worker = await h.spawnReadyWorker();
    const report = (await handle.result()) as DrillReport;
    const s = report.scenarios[0]!;
    console.log(
      `drill with its worker killed: RTO ${s.measured?.rtoMs} ms, RPO ${s.measured?.rpo.events} of ${s.measured?.acknowledged}; ` +
        `phases ${s.phases.map((p) => `${p.name} ${p.endedAt! - p.startedAt} ms`).join(', ')}; healed: ${s.heal?.detail}`,
    );
    assert.equal(report.status, 'passed', JSON.stringify(s.verdict));
    assert.equal(s.heal?.healed, true);
    assert.deepEqual(s.measured!.rpo, { events: 0, spanMs: 0 });
    assert.equal(s.measured!.duplicated + s.measured!.changed, 0);
    // The load wrote on while no worker ran: its ledger holds writes acknowledged after the kill.
    const recover = s.phases.find((p) => p.name === 'recover')!;
    assert.ok(recover.endedAt! > killedAt, 'the recovery was seen by the new worker');
    assert.ok(s.measured!.acknowledged > 40);
    const record = (await readPrimary(center, KEY)).record!;
    assert.equal(record.node, 'node1', 'back to the starting topology');
    assert.ok(record.epoch >= 3);
    assert.equal(isLive(await readLease(center, 'kimiclaw'), Date.now()), false, 'no lease left behind');
    assert.equal((await nodeHealth(h.nodes[0]!.url)).syncState, 'in-sync');
  });
});
