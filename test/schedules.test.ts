/**
 * Temporal Schedules instead of cron, against a real Temporal dev server: apply is idempotent,
 * updates what changed, deletes what is no longer configured and leaves foreign schedules alone.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ScheduleOverlapPolicy } from '@temporalio/client';
import { parseConfig, type ConfigInput } from '../src/config';
import { applySchedules } from '../src/schedules';
import type { backup } from '../src/workflows';
import { Harness, eventually, runCli } from './harness';

let h: Harness;

before(async () => {
  h = await Harness.start();
});

after(async () => {
  await h?.stop();
});

const ids = {
  L1: 'kimiclaw-dr-backup-kimiclaw-L1',
  L2: 'kimiclaw-dr-backup-kimiclaw-L2',
  L3: 'kimiclaw-dr-backup-kimiclaw-L3',
  testL2: 'kimiclaw-dr-restore-test-kimiclaw-L2',
  testL3: 'kimiclaw-dr-restore-test-kimiclaw-L3',
};
const all = [ids.L1, ids.L2, ids.L3, ids.testL2, ids.testL3];

function configWith(schedules: ConfigInput['schedules']) {
  return parseConfig({ ...h.rawConfig, schedules }, 'test');
}

describe('schedules apply', () => {
  test('creates one schedule per tier and the restore tests, with skip-overlap and a catch-up window', async () => {
    const result = await applySchedules(h.client, h.config);
    assert.deepEqual(result.created.sort(), [...all].sort());
    assert.deepEqual([result.updated, result.deleted, result.unchanged], [[], [], []]);

    const l2 = await h.client.schedule.getHandle(ids.L2).describe();
    assert.equal(l2.policies.overlap, ScheduleOverlapPolicy.SKIP);
    assert.equal(l2.policies.catchupWindow, 86_400_000);
    assert.equal(l2.action.type, 'startWorkflow');
    assert.equal(l2.action.workflowType, 'backup');
    assert.equal(l2.action.taskQueue, h.taskQueue);
    assert.deepEqual(l2.action.args, [{ database: 'kimiclaw', tier: 'L2', reason: 'schedule' }]);
    assert.deepEqual(
      l2.spec.intervals?.map((i) => [i.every, i.offset]),
      [[86_400_000, 3 * 3_600_000]],
    );
    const l3 = await h.client.schedule.getHandle(ids.L3).describe();
    assert.equal(l3.spec.calendars?.length, 1, 'L3 runs on a monthly calendar (cron)');
    const l1 = await h.client.schedule.getHandle(ids.L1).describe();
    assert.deepEqual(
      l1.spec.intervals?.map((i) => i.every),
      [3_600_000],
    );
    assert.equal(l1.policies.catchupWindow, 3_600_000);
    const test2 = await h.client.schedule.getHandle(ids.testL2).describe();
    assert.equal(test2.action.type === 'startWorkflow' && test2.action.workflowType, 'restoreTest');
    assert.deepEqual(test2.action.type === 'startWorkflow' && test2.action.args, [
      { database: 'kimiclaw', tier: 'L2' },
    ]);
    assert.equal(test2.spec.calendars?.length, 1, 'weekly');
  });

  test('applying the same config again changes nothing', async () => {
    const result = await applySchedules(h.client, h.config);
    assert.deepEqual(result.unchanged.sort(), [...all].sort());
    assert.deepEqual([result.created, result.updated, result.deleted], [[], [], []]);
  });

  test('a changed cadence is updated, a removed tier deleted, a foreign schedule left alone', async () => {
    const foreign = await h.client.schedule.create({
      scheduleId: 'someone-else',
      spec: { intervals: [{ every: '1d' }] },
      action: { type: 'startWorkflow', workflowType: 'other', taskQueue: 'other', args: [] },
      state: { paused: true },
    });
    const config = configWith({
      backup: {
        L1: { every: '1h' },
        L2: { cron: ['0 */6 * * *'], catchupWindow: '2h' },
        L3: null,
      },
    });
    const result = await applySchedules(h.client, config);
    assert.deepEqual(result.updated, [ids.L2]);
    assert.deepEqual(result.deleted, [ids.L3]);
    assert.deepEqual(result.unchanged, [ids.L1, ids.testL2, ids.testL3]);
    const l2 = await h.client.schedule.getHandle(ids.L2).describe();
    assert.equal(l2.policies.catchupWindow, 2 * 3_600_000);
    assert.deepEqual(l2.spec.intervals ?? [], []);
    assert.equal(l2.spec.calendars?.length, 1, 'the 6-hourly cron of the old CronJob');
    await assert.rejects(h.client.schedule.getHandle(ids.L3).describe());
    assert.equal((await foreign.describe()).scheduleId, 'someone-else');
    await foreign.delete();
    // Back to the default config for the tests below.
    await applySchedules(h.client, h.config);
  });

  test('pause and resume through the CLI; an operator pause survives apply', async () => {
    const paused = await runCli(['schedules', 'pause', ids.L1], h.env());
    assert.equal(paused.code, 0, paused.stderr);
    assert.equal((await h.client.schedule.getHandle(ids.L1).describe()).state.paused, true);
    await applySchedules(h.client, h.config);
    assert.equal((await h.client.schedule.getHandle(ids.L1).describe()).state.paused, true);

    const list = await runCli(['schedules', 'list', '--json'], h.env());
    assert.equal(list.code, 0, list.stderr);
    const infos = JSON.parse(list.stdout) as Array<{ scheduleId: string; paused: boolean }>;
    assert.deepEqual(
      infos.map((i) => [i.scheduleId, i.paused]),
      [
        [ids.L1, true],
        [ids.L2, false],
        [ids.L3, false],
        [ids.testL2, false],
        [ids.testL3, false],
      ],
    );

    const resumed = await runCli(['schedules', 'resume', ids.L1], h.env());
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.equal((await h.client.schedule.getHandle(ids.L1).describe()).state.paused, false);
  });

  test('pause refuses a schedule that is not ours', async () => {
    const cli = await runCli(['schedules', 'pause', 'someone-else'], h.env());
    assert.equal(cli.code, 1);
    assert.match(cli.stderr, /not one of ours: kimiclaw-dr schedule ids start with "kimiclaw-dr-"/);
  });

  test('trigger runs a real backup now', async () => {
    const cli = await runCli(['schedules', 'trigger', ids.L1], h.env());
    assert.equal(cli.code, 0, cli.stderr);
    const workflowId = await eventually(async () => {
      const d = await h.client.schedule.getHandle(ids.L1).describe();
      const action = d.info.recentActions.at(-1)?.action;
      return action?.type === 'startWorkflow' ? action.workflow.workflowId : undefined;
    }, 'the triggered run');
    assert.match(workflowId, /^backup-kimiclaw-L1-scheduled/);
    const result = await h.client.workflow.getHandle<typeof backup>(workflowId).result();
    assert.equal(result.tier, 'L1');
    assert.equal(result.reason, 'schedule');
  });
});
