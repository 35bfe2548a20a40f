import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { digest, planSchedules, type PlannedSchedule } from '../../src/backup/schedule-plan';
import { parseConfig } from '../../src/config';

const HOUR = 3_600_000;
const DAY = 86_400_000;

function config(extra: Record<string, unknown> = {}, databases = ['kimiclaw']) {
  return parseConfig({
    storage: { bucket: 'my-bucket' },
    databases: databases.map((name) => ({
      name,
      nodes: [{ id: 'n1', url: 'http://127.0.0.1:7070', dataDir: '/data' }],
    })),
    ...extra,
  });
}

/** The backup schedules of a plan (restore tests are checked on their own below). */
function backupPlans(c: ReturnType<typeof config>): PlannedSchedule[] {
  return planSchedules(c).filter((p) => p.workflowType === 'backup');
}

function byTier(plan: PlannedSchedule[]): Record<string, PlannedSchedule> {
  return Object.fromEntries(plan.map((p) => [p.tier, p]));
}

void describe('planSchedules', () => {
  void test('the default config plans one schedule per tier', () => {
    const plan = backupPlans(config());
    assert.deepEqual(
      plan.map((p) => p.scheduleId),
      ['kimiclaw-dr-backup-kimiclaw-L1', 'kimiclaw-dr-backup-kimiclaw-L2', 'kimiclaw-dr-backup-kimiclaw-L3'],
    );
    const { L1, L2, L3 } = byTier(plan);
    assert.deepEqual(L1 && { ...L1, digest: undefined }, {
      scheduleId: 'kimiclaw-dr-backup-kimiclaw-L1',
      workflowType: 'backup',
      workflowId: 'backup-kimiclaw-L1-scheduled',
      args: [{ database: 'kimiclaw', tier: 'L1', reason: 'schedule' }],
      spec: { intervals: [{ every: HOUR }], cronExpressions: [], timezone: 'UTC' },
      catchupWindowMs: HOUR,
      paused: false,
      database: 'kimiclaw',
      tier: 'L1',
      digest: undefined,
    });
    assert.deepEqual(L2?.spec, {
      intervals: [{ every: DAY, offset: 3 * HOUR }],
      cronExpressions: [],
      timezone: 'UTC',
    });
    assert.deepEqual(L3?.spec, { intervals: [], cronExpressions: ['0 4 1 * *'], timezone: 'UTC' });
    for (const p of plan) assert.match(p.digest, /^[0-9a-f]{8}$/);
  });

  void test('catchup windows default per tier: 1h, 1d, 7d', () => {
    const { L1, L2, L3 } = byTier(backupPlans(config()));
    assert.equal(L1?.catchupWindowMs, HOUR);
    assert.equal(L2?.catchupWindowMs, DAY);
    assert.equal(L3?.catchupWindowMs, 7 * DAY);
  });

  void test('a configured catchup window overrides the default', () => {
    const plan = backupPlans(config({ schedules: { backup: { L3: { cron: ['0 4 1 * *'], catchupWindow: '2d' } } } }));
    assert.equal(byTier(plan).L3?.catchupWindowMs, 2 * DAY);
    assert.equal(byTier(plan).L1?.catchupWindowMs, HOUR);
  });

  void test('a tier set to null has no schedule', () => {
    const plan = backupPlans(config({ schedules: { backup: { L1: null, L3: null } } }));
    assert.deepEqual(
      plan.map((p) => p.scheduleId),
      ['kimiclaw-dr-backup-kimiclaw-L2'],
    );
  });

  void test('the old 6-hourly cron is expressible', () => {
    const plan = backupPlans(config({ schedules: { backup: { L1: { cron: ['0 */6 * * *'] } } } }));
    assert.deepEqual(byTier(plan).L1?.spec, { intervals: [], cronExpressions: ['0 */6 * * *'], timezone: 'UTC' });
  });

  void test('every plus cron, jitter, timezone and pause reach the plan', () => {
    const plan = backupPlans(
      config({
        schedules: {
          backup: {
            L2: {
              every: '12h',
              offset: '30m',
              cron: ['0 1 * * 0'],
              jitter: '5m',
              timezone: 'Europe/Berlin',
              paused: true,
            },
          },
        },
      }),
    );
    const L2 = byTier(plan).L2;
    assert.deepEqual(L2?.spec, {
      intervals: [{ every: 12 * HOUR, offset: 30 * 60_000 }],
      cronExpressions: ['0 1 * * 0'],
      timezone: 'Europe/Berlin',
      jitter: 5 * 60_000,
    });
    assert.equal(L2?.paused, true);
  });

  void test('multiple databases get one schedule per database and tier', () => {
    const plan = backupPlans(config({ schedules: { backup: { L3: null } } }, ['kimiclaw', 'audit']));
    assert.deepEqual(
      plan.map((p) => p.scheduleId),
      [
        'kimiclaw-dr-backup-kimiclaw-L1',
        'kimiclaw-dr-backup-kimiclaw-L2',
        'kimiclaw-dr-backup-audit-L1',
        'kimiclaw-dr-backup-audit-L2',
      ],
    );
    const audit = plan.filter((p) => p.database === 'audit');
    assert.deepEqual(
      audit.map((p) => p.args[0]),
      [
        { database: 'audit', tier: 'L1', reason: 'schedule' },
        { database: 'audit', tier: 'L2', reason: 'schedule' },
      ],
    );
    assert.deepEqual(
      audit.map((p) => p.workflowId),
      ['backup-audit-L1-scheduled', 'backup-audit-L2-scheduled'],
    );
    // Same spec, different database: different digests.
    assert.notEqual(plan[0]?.digest, plan[2]?.digest);
  });

  void test('the digest is stable when nothing changes', () => {
    const a = backupPlans(config());
    const b = backupPlans(config());
    assert.deepEqual(
      a.map((p) => p.digest),
      b.map((p) => p.digest),
    );
    // Writing the same duration differently is no change.
    const c = backupPlans(config({ schedules: { backup: { L1: { every: '60m' } } } }));
    assert.equal(byTier(c).L1?.digest, byTier(a).L1?.digest);
  });

  void test('the digest changes when anything changes', () => {
    const base = byTier(backupPlans(config())).L1?.digest;
    assert.ok(base);
    const variants: Array<Record<string, unknown>> = [
      { every: '2h' },
      { every: '1h', offset: '5m' },
      { every: '1h', cron: ['0 * * * *'] },
      { every: '1h', timezone: 'Europe/Berlin' },
      { every: '1h', jitter: '1m' },
      { every: '1h', catchupWindow: '2h' },
      { every: '1h', paused: true },
      { cron: ['0 */6 * * *'] },
    ];
    const seen = new Set([base]);
    for (const L1 of variants) {
      const d = byTier(backupPlans(config({ schedules: { backup: { L1 } } }))).L1?.digest;
      assert.ok(d && !seen.has(d), `${JSON.stringify(L1)} gave a digest seen before`);
      seen.add(d);
    }
    const other = byTier(backupPlans(config({}, ['other']))).L1?.digest;
    assert.ok(other && !seen.has(other));
  });

  void test('digest is FNV-1a 32 bit, 8 hex digits', () => {
    assert.equal(digest(''), '811c9dc5');
    assert.equal(digest('a'), 'e40c292c');
    assert.equal(digest('foobar'), 'bf9cf968');
    assert.notEqual(digest('ab'), digest('ba'));
  });
});

void describe('restore test schedules', () => {
  void test('by default the newest L2 is tested weekly and the newest L3 monthly', () => {
    const tests = planSchedules(config()).filter((p) => p.workflowType === 'restoreTest');
    assert.deepEqual(
      tests.map((p) => [p.scheduleId, p.args, p.spec.cronExpressions]),
      [
        ['kimiclaw-dr-restore-test-kimiclaw-L2', [{ database: 'kimiclaw', tier: 'L2' }], ['0 5 * * 0']],
        ['kimiclaw-dr-restore-test-kimiclaw-L3', [{ database: 'kimiclaw', tier: 'L3' }], ['0 6 2 * *']],
      ],
    );
  });

  void test('a restore test set to null has no schedule; one set to an interval uses it', () => {
    const tests = planSchedules(config({ schedules: { restoreTest: { L3: null, L2: { every: '1d' } } } })).filter(
      (p) => p.workflowType === 'restoreTest',
    );
    assert.deepEqual(
      tests.map((p) => [p.tier, p.spec.intervals]),
      [['L2', [{ every: DAY }]]],
    );
  });
});

void describe('the drill schedule', () => {
  const cluster = (extra: Record<string, unknown> = {}) =>
    parseConfig({
      storage: { bucket: 'my-bucket' },
      databases: [
        { name: 'audit', nodes: [{ id: 'a1', url: 'http://127.0.0.1:7060', dataDir: '/audit' }] },
        {
          name: 'kimiclaw',
          nodes: [
            { id: 'n1', url: 'http://127.0.0.1:7070', dataDir: '/data1' },
            { id: 'n2', url: 'http://127.0.0.1:7071', dataDir: '/data2' },
          ],
        },
      ],
      ...extra,
    });
  const drills = (c: ReturnType<typeof config>) => planSchedules(c).filter((p) => p.workflowType === 'drill');

  void test('quarterly at 03:00 UTC on the replicated cluster, the production scenarios, a one-hour catch-up window', () => {
    const [d, ...more] = drills(cluster());
    assert.equal(more.length, 0);
    assert.deepEqual(d && { ...d, digest: undefined }, {
      scheduleId: 'kimiclaw-dr-drill-kimiclaw',
      workflowType: 'drill',
      workflowId: 'drill-kimiclaw-scheduled',
      args: [
        {
          target: 'production',
          scenarios: ['single-node', 'damaged-file'],
          confirmed: true,
          reason: 'the quarterly drill (schedules.drill)',
        },
      ],
      spec: { intervals: [], cronExpressions: ['0 3 1 1,4,7,10 *'], timezone: 'UTC' },
      catchupWindowMs: HOUR,
      paused: false,
      database: 'kimiclaw',
      digest: undefined,
    });
  });

  void test('it follows the configured scenarios and timing; null turns it off; a single node has none', () => {
    const [d] = drills(
      cluster({
        drills: { production: { scenarios: ['single-node'] } },
        schedules: { drill: { cron: ['30 2 1 */3 *'], catchupWindow: '15m', paused: true } },
      }),
    );
    assert.deepEqual(d?.args, [
      {
        target: 'production',
        scenarios: ['single-node'],
        confirmed: true,
        reason: 'the quarterly drill (schedules.drill)',
      },
    ]);
    assert.deepEqual([d?.spec.cronExpressions, d?.catchupWindowMs, d?.paused], [['30 2 1 */3 *'], 15 * 60_000, true]);
    assert.deepEqual(drills(cluster({ schedules: { drill: null } })), []);
    assert.deepEqual(drills(config()), []);
  });
});
