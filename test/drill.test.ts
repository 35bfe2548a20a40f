/**
 * The `drill` workflow end to end on a real cluster (two node processes, the Temporal dev server,
 * versitygw, the worker and its monitor): a production single-node drill kills the primary for
 * real, the monitor fails over, the node's supervisor starts it again, the drill heals back to the
 * starting topology and measures RTO and RPO from its own ledger on every node; the report is
 * stored and the drill metrics follow it. An impossible objective fails the drill saying by how
 * much; bad input is refused before anything is touched.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { WorkflowFailedError } from '@temporalio/client';
import { NodeClient } from '../src/node-client';
import { type ConfigCenter, readPrimary } from '../src/config-center';
import { acquireLease, isLive, readLease, releaseLease } from '../src/config-center/lease';
import { listReports, loadReport } from '../src/drill/report-store';
import { applySchedules } from '../src/schedules';
import { drillStateQuery } from '../src/workflows/messages';
import { formatReport as formatted } from '../src/drill/format';
import type { DrillReport } from '../src/drill/report';
import { S3Store, createS3Client } from '../src/storage/s3';
import {
  Harness,
  failureMessages,
  monitorProgress,
  type DrillCluster,
  runCli,
  startDrillCluster,
  startDrillUntilFault,
  waitFor,
} from './harness';

const KEY = '/services/kimiclaw/primary';

void describe('drill: a production single-node drill on a real cluster', () => {
  let cluster: DrillCluster | undefined;
  let h: Harness;
  let center: ConfigCenter;
  let store: S3Store;

  before(async () => {
    // A short scrub interval: a damaged file is found within seconds (the default is a minute).
    cluster = await startDrillCluster({
      nodeArgs: ['--scrub-interval', '1s'],
      config: (base) => ({
        ...base,
        // The log archive a surgical restore replays, sealed every second.
        archive: { interval: '1s', segmentMaxEvents: 5_000 },
        drills: { production: { scenarios: ['single-node', 'damaged-file', 'bad-writes'] } },
      }),
    });
    ({ h, center } = cluster);
    store = new S3Store(createS3Client(h.config.storage), h.config.storage);
  });
  after(async () => {
    await cluster?.stop();
  });

  const runDrill = (id: string, input: unknown) =>
    h.client.workflow.execute('drill', {
      taskQueue: h.config.temporal.taskQueue,
      workflowId: id,
      args: [input],
    }) as Promise<DrillReport>;

  void test('bad input is refused before anything is touched', async () => {
    const before = (await readPrimary(center, KEY)).record!;
    for (const [input, message] of [
      [{ scenarios: ['meteor'] }, /scenarios\.0: "meteor" is not a scenario \(accepted: single-node/],
      [
        { target: 'production', scenarios: ['zone-failure'], confirmed: true },
        /zone-failure is not allowed on production/,
      ],
      [
        { objectives: { 'single-node': { rto: '0s' } } },
        /objectives\.single-node\.rto: "0s" must be greater than zero/,
      ],
    ] as const) {
      const err = await runDrill(`drill-bad-${Math.random().toString(36).slice(2)}`, input).catch((e: unknown) => e);
      assert.ok(err instanceof WorkflowFailedError, `refused: ${JSON.stringify(input)}`);
      assert.match(failureMessages(err), message);
    }
    // Another topology change holds the cluster's lease: refused at once, naming it.
    const other = await acquireLease(center, 'kimiclaw', {
      holder: 'switchover-by-hand/1',
      purpose: 'switchover',
      ttlMs: 60_000,
    });
    assert.ok(other.ok);
    const busy = await runDrill('drill-busy', {
      target: 'production',
      scenarios: ['single-node'],
      confirmed: true,
    }).catch((e: unknown) => e);
    assert.ok(busy instanceof WorkflowFailedError);
    assert.match(
      failureMessages(busy),
      /cluster kimiclaw: another topology change is in progress, switchover held by switchover-by-hand\/1 .* this drill was refused/,
    );
    assert.equal(await releaseLease(center, 'kimiclaw', 'switchover-by-hand/1'), true);
    const now = (await readPrimary(center, KEY)).record!;
    assert.deepEqual([now.node, now.epoch], [before.node, before.epoch], 'nothing changed');
    assert.ok(h.nodes.every((n) => n.running));
  });

  void test('single-node: the primary killed, failed over, healed back; RTO measured, nothing lost, report stored', async () => {
    const report = await runDrill('drill-single-node-1', {
      target: 'production',
      scenarios: ['single-node'],
      confirmed: true,
    });
    const s = report.scenarios[0]!;
    console.log(
      `drill single-node: RTO ${s.measured?.rtoMs} ms, RPO ${s.measured?.rpo.events} of ${s.measured?.acknowledged} acknowledged; ` +
        `phases ${s.phases.map((p) => `${p.name} ${p.endedAt! - p.startedAt} ms`).join(', ')}; healed: ${s.heal?.detail}`,
    );
    assert.equal(report.status, 'passed', JSON.stringify(s.verdict));
    assert.deepEqual(
      s.phases.map((p) => p.name),
      ['steady', 'load', 'inject', 'detect', 'recover', 'heal', 'measure', 'verify'],
    );
    assert.ok(s.measured!.detectMs! >= 0 && s.measured!.detectMs! <= s.measured!.rtoMs!, 'detected before recovered');
    assert.ok(s.measured!.rtoMs! > 0 && s.measured!.rtoMs! < 60_000, `RTO ${s.measured!.rtoMs} ms`);
    assert.deepEqual(s.measured!.rpo, { events: 0, spanMs: 0 });
    assert.ok(s.measured!.acknowledged > 40);
    assert.equal(s.heal!.healed, true);
    // Healed back: node1 primary again, at a newer epoch, node2 in sync with the same data.
    const record = (await readPrimary(center, KEY)).record!;
    assert.equal(record.node, 'node1');
    assert.ok(record.epoch >= 3, `epoch ${record.epoch}: failed over and switched back`);
    assert.match(report.id, /^drill-single-node-1-\d{8}T\d{6}Z$/);
    // It held the lease: preempted by the failover it set off (the failover's result says so; the
    // drill's keeper may only see the node's rejoin that took the lease after it), taken back,
    // released at the end.
    const lease = report.lease!;
    assert.match(lease.holder, /^drill-single-node-1\//);
    const detect = s.phases.find((p) => p.name === 'detect')!;
    assert.match(detect.detail!, /started failover-kimiclaw, which took over the drill's lease/);
    assert.ok(
      lease.events.some((e) => / lost: /.test(e)),
      `lost to the machinery: ${JSON.stringify(lease.events)}`,
    );
    assert.ok(
      lease.events.some((e) => / taken back$/.test(e)),
      JSON.stringify(lease.events),
    );
    assert.equal(lease.events.at(-1), 'released at the end');
    assert.equal(isLive(await readLease(center, 'kimiclaw'), Date.now()), false, 'no lease left behind');
    assert.deepEqual(await loadReport(store, report.id), report);
    const metrics = await h.worker!.metrics.registry.metrics();
    assert.match(metrics, /^drill_passed\{scenario="single-node"\} 1$/m);
    assert.match(metrics, /^drill_rpo_events\{scenario="single-node"\} 0$/m);
  });

  void test('the quarterly schedule (one-hour catch-up window), triggered: single-node; damaged-file (the primary file overwritten on disk: found by its scrub, failed over, rebuilt); bad-writes (a surgical restore leaves them out); healed back, nothing lost', async () => {
    const applied = await applySchedules(h.client, h.config);
    assert.ok(applied.created.includes('kimiclaw-dr-drill-kimiclaw'), JSON.stringify(applied));
    const schedule = h.client.schedule.getHandle('kimiclaw-dr-drill-kimiclaw');
    const described = await schedule.describe();
    assert.equal(described.policies.catchupWindow, 3_600_000, 'a missed drill is skipped after an hour');
    assert.deepEqual(described.action.type === 'startWorkflow' && described.action.args, [
      {
        target: 'production',
        scenarios: ['single-node', 'damaged-file', 'bad-writes'],
        confirmed: true,
        reason: 'the quarterly drill (schedules.drill)',
      },
    ]);
    assert.ok(
      described.info.nextActionTimes[0]!.getUTCDate() === 1 &&
        [0, 3, 6, 9].includes(described.info.nextActionTimes[0]!.getUTCMonth()) &&
        described.info.nextActionTimes[0]!.getUTCHours() === 3,
      `next run ${described.info.nextActionTimes[0]!.toISOString()}`,
    );
    const before = (await readPrimary(center, KEY)).record!;
    const startedAt = Date.now();
    await schedule.trigger();
    const workflowId = await waitFor('the scheduled drill to start', async () => {
      const action = (await schedule.describe()).info.recentActions.at(-1)?.action;
      return action?.type === 'startWorkflow' && action.workflow.workflowId;
    });
    const report = (await h.client.workflow
      .getHandle(workflowId)
      .result()
      .catch((err: unknown) => {
        // The drill's report is in the failure's details: print its phases to say why.
        const details = ((err as { cause?: { details?: unknown[] } }).cause?.details?.[0] ?? {}) as DrillReport;
        for (const sc of details.scenarios ?? []) {
          console.log(`${sc.scenario}: ${sc.phases.map((p) => `${p.name}: ${p.detail ?? ''}`).join(' | ')}`);
        }
        throw err;
      })) as DrillReport;
    // Off again (the backup schedules too): the rest of the suite starts its drills by hand.
    for (const id of applied.created) await h.client.schedule.getHandle(id).delete();
    assert.deepEqual(
      report.scenarios.map((x) => [x.scenario, x.verdict.passed, x.verdict.reasons]),
      [
        ['single-node', true, []],
        ['damaged-file', true, []],
        ['bad-writes', true, []],
      ],
    );
    const s = report.scenarios[1]!;
    console.log(
      `drill damaged-file: detection ${s.measured?.detectMs} ms, RTO from detection ${s.measured?.rtoMs} ms, ` +
        `RPO ${s.measured?.rpo.events} of ${s.measured?.acknowledged} acknowledged; ` +
        `phases ${s.phases.map((p) => `${p.name} ${p.endedAt! - p.startedAt} ms`).join(', ')}; healed: ${s.heal?.detail}`,
    );
    assert.equal(report.status, 'passed', JSON.stringify(s.verdict));
    assert.deepEqual(
      s.phases.map((p) => p.name),
      ['steady', 'prepare', 'load', 'inject', 'detect', 'recover', 'heal', 'measure', 'verify'],
    );
    assert.match(s.phases[1]!.detail!, /^L1 backup \S+ of node1$/);
    assert.match(s.phases[3]!.detail!, /KiB of block \d+ of node1's .*kimiclaw\.duckdb overwritten/);
    assert.match(s.phases[4]!.detail!, /^node1 reported its file damaged \(by (scrub|read|write|checkpoint): /);
    assert.equal(s.measured!.rtoFrom, 'detection');
    assert.ok(s.measured!.detectMs! >= 0 && s.measured!.detectMs! < 60_000, `detection ${s.measured!.detectMs} ms`);
    assert.ok(s.measured!.rtoMs! > 0 && s.measured!.rtoMs! < 60_000, `RTO ${s.measured!.rtoMs} ms`);
    assert.deepEqual(s.measured!.rpo, { events: 0, spanMs: 0 });
    assert.equal(s.heal!.healed, true);
    // The damaged node was rebuilt from a snapshot (not merely rejoined) during that scenario.
    const window = { from: s.faultAt!, to: s.phases.find((p) => p.name === 'heal')!.endedAt! };
    const rebuilt: boolean[] = [];
    for await (const run of h.client.workflow.list({ query: `WorkflowId = 'recover-kimiclaw-node1'` })) {
      const at = run.startTime.getTime();
      if (at < window.from || at > window.to) continue;
      rebuilt.push(
        ((await h.client.workflow.getHandle(run.workflowId, run.runId).result()) as { rebuilt: boolean }).rebuilt,
      );
    }
    assert.deepEqual(rebuilt, [true], 'node1 was rebuilt once while the damaged-file scenario ran');
    assert.ok(startedAt < window.from);
    assert.match(formatted(report), /RTO \d+\.\d+ s from detection/);

    // bad-writes: ten bad batches among the load's writes; the surgical restore left exactly them out.
    const b = report.scenarios[2]!;
    console.log(
      `drill bad-writes: RTO from the repair's start ${b.measured?.rtoMs} ms, RPO ${b.measured?.rpo.events} of ${b.measured?.acknowledged} acknowledged; ` +
        `phases ${b.phases.map((p) => `${p.name} ${p.endedAt! - p.startedAt} ms`).join(', ')}; ${b.phases.find((p) => p.name === 'recover')?.detail}`,
    );
    assert.deepEqual(
      b.phases.map((p) => p.name),
      ['steady', 'prepare', 'load', 'inject', 'detect', 'recover', 'heal', 'measure', 'verify'],
    );
    assert.match(b.phases[3]!.detail!, /^10 bad batches of 2 events written to node1 between good writes/);
    assert.match(
      b.phases[5]!.detail!,
      /^restore backup left out 10 batches \(20 events\); first write acknowledged by/,
    );
    assert.deepEqual(b.measured!.rpo, { events: 0, spanMs: 0 });
    assert.equal(b.measured!.duplicated + b.measured!.changed, 0);
    for (const n of h.nodes) {
      const client = new NodeClient(n.id, n.url, h.config.nodeAuth.token);
      let bad = 0;
      for (let after = 0, more = true; more;) {
        const page = await client.events(after, 50_000);
        bad += page.events.filter((e) => e.kind === 'drill-bad').length;
        [after, more] = [page.lastLsn, page.more];
      }
      assert.equal(bad, 0, `${n.id} holds no bad event`);
    }
    const record = (await readPrimary(center, KEY)).record!;
    assert.equal(record.node, before.node);
    assert.ok(record.epoch >= before.epoch + 5, `epoch ${before.epoch} → ${record.epoch}`);
  });

  void test('kimiclaw-dr drills run: refused without --confirm, with an unknown scenario or one the cluster cannot run; with --wait it prints the report', async () => {
    const env = h.env();
    const unconfirmed = await runCli(['drills', 'run', '--target', 'production', '--scenario', 'single-node'], env);
    assert.equal(unconfirmed.code, 1);
    assert.match(unconfirmed.stderr, /confirmed: a production drill injects real faults into the cluster; confirm it/);
    const unknown = await runCli(['drills', 'run', '--target', 'production', '--scenario', 'meteor', '--confirm'], env);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /scenarios\.0: "meteor" is not accepted; accepted values: "single-node"/);
    // Refused by the drill's planning (in the workflow): the CLI prints the reason, not only the
    // wrapping failures.
    const noRegion = await runCli(['drills', 'run', '--scenario', 'region-failure', '--wait'], env);
    assert.equal(noRegion.code, 1);
    assert.match(
      noRegion.stderr,
      /\n {2}cause: scenarios: region-failure needs a standby region \(declare one under "regions"\)/,
    );
    const run = await runCli(
      ['drills', 'run', '--target', 'production', '--scenario', 'single-node', '--confirm', '--wait'],
      env,
    );
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^drill started: workflow drill-kimiclaw$/m);
    assert.match(run.stdout, /^drill drill-kimiclaw-\d{8}T\d{6}Z: PASSED/m);
    assert.match(run.stdout, /^single-node: passed$/m);
    const list = await runCli(['drills', 'list'], env);
    assert.match(list.stdout, /^drill-kimiclaw-\d{8}T\d{6}Z\s+\S+\s+production\s+PASSED\s+single-node ok/m);
  });

  void test('a drill cancelled right after its fault heals all the same, and its report says cancelled', async () => {
    // Positive evidence the fault was injected: the primary's process is gone.
    const handle = await startDrillUntilFault(h, 'drill-cancelled');
    // A second drill meanwhile is refused before any fault: the first holds the lease (or the
    // failover it set off does).
    const second = await runDrill('drill-second', {
      target: 'production',
      scenarios: ['single-node'],
      confirmed: true,
    }).catch((e: unknown) => e);
    assert.ok(second instanceof WorkflowFailedError);
    assert.match(
      failureMessages(second),
      /another topology change is in progress, (drill held by drill-cancelled\/|failover held by failover-kimiclaw\/).*this drill was refused/,
    );
    await handle.cancel();
    const err = await handle.result().catch((e: unknown) => e);
    assert.ok(err instanceof WorkflowFailedError, 'the drill ended cancelled');
    assert.match(failureMessages(err), /cancel/i);
    const { reports } = await listReports(store);
    const stored = reports.find((r) => r.id.startsWith('drill-cancelled-'))!;
    assert.equal(stored.status, 'cancelled');
    const s = stored.scenarios[0]!;
    console.log(
      `drill cancelled: phases ${s.phases.map((p) => `${p.name} ${p.endedAt! - p.startedAt} ms${p.ok === false ? ` (${p.detail})` : ''}`).join(', ')}; healed: ${s.heal?.detail}`,
    );
    assert.equal(s.heal?.healed, true, `healed: ${s.heal?.detail}`);
    assert.deepEqual(s.measured?.rpo, { events: 0, spanMs: 0 });
    const record = (await readPrimary(center, KEY)).record!;
    assert.equal(record.node, 'node1', 'back to the starting topology');
  });

  void test('started from the UI without "confirmed", it shows the cluster and waits for the confirm signal; confirmed, an impossible objective (RTO 1 ms) fails it, saying which and by how much', async () => {
    const pid = h.nodes[0]!.pid;
    const handle = await h.client.workflow.start('drill', {
      taskQueue: h.config.temporal.taskQueue,
      workflowId: 'drill-kimiclaw',
      args: [{ target: 'production', scenarios: ['single-node'], objectives: { 'single-node': { rto: '1ms' } } }],
    });
    const state = await waitFor('the drill awaiting its confirmation', async () => {
      const s = await handle.query(drillStateQuery).catch(() => undefined);
      return s?.phase === 'awaiting-confirmation' && s;
    });
    assert.match(state.steady!, /^primary node1 at epoch \d+, standby node2$/);
    // It had its chance to inject: the monitor probed the cluster several times meanwhile.
    const probes = (await monitorProgress(h.client))?.probes ?? 0;
    await waitFor('monitor probes', async () => ((await monitorProgress(h.client))?.probes ?? 0) >= probes + 3);
    assert.equal(h.nodes[0]!.pid, pid, 'nothing injected before the confirmation');
    assert.equal((await handle.query(drillStateQuery)).phase, 'awaiting-confirmation');
    const confirm = await runCli(['drills', 'confirm'], h.env());
    assert.equal(confirm.code, 0, confirm.stderr);
    assert.match(
      confirm.stdout,
      /^drill drill-kimiclaw confirmed; it checked: primary node1 at epoch \d+, standby node2$/m,
    );
    const err = await handle.result().catch((e: unknown) => e);
    assert.ok(err instanceof WorkflowFailedError);
    const message = failureMessages(err);
    const named =
      /drill (drill-kimiclaw-\d{8}T\d{6}Z) failed: single-node: RTO \d+\.\d+ s missed the objective 1ms by \d+\.\d+ s/.exec(
        message,
      );
    assert.ok(named, message);
    const stored = (await loadReport(store, named[1]!))!;
    assert.equal(stored.status, 'failed');
    assert.equal(stored.scenarios[0]!.heal?.healed, true, 'it healed all the same');
    assert.equal((await readPrimary(center, KEY)).record!.node, 'node1');
    assert.match(await h.worker!.metrics.registry.metrics(), /^drill_passed\{scenario="single-node"\} 0$/m);
  });
});
