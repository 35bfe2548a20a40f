import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DrMetrics } from '../../src/metrics';

async function gauge(metrics: DrMetrics, name: string, labels: { database: string; tier: string }) {
  const metric = metrics.registry.getSingleMetric(name);
  assert.ok(metric, `${name} is registered`);
  const { values } = await metric.get();
  return values.find((v) => v.labels.database === labels.database && v.labels.tier === labels.tier)?.value;
}

function record(metrics: DrMetrics, database: string, tier: string, completedAt: string, n: number): void {
  metrics.recordBackup({
    database,
    tier,
    completedAt: new Date(completedAt),
    durationSeconds: n,
    storedBytes: n * 100,
    sourceBytes: n * 1_000,
  });
}

void describe('DrMetrics', () => {
  void test('recordBackup sets the gauges of its database and tier', async () => {
    const metrics = new DrMetrics();
    record(metrics, 'kimiclaw', 'L2', '2026-11-26T03:00:00.000Z', 7);
    const labels = { database: 'kimiclaw', tier: 'L2' };
    assert.equal(await gauge(metrics, 'backup_last_success_timestamp', labels), Date.UTC(2026, 10, 26, 3) / 1000);
    assert.equal(await gauge(metrics, 'backup_duration_seconds', labels), 7);
    assert.equal(await gauge(metrics, 'backup_size_bytes', labels), 700);
    assert.equal(await gauge(metrics, 'backup_source_size_bytes', labels), 7_000);
    assert.equal(
      await gauge(metrics, 'backup_last_success_timestamp', { database: 'kimiclaw', tier: 'L1' }),
      undefined,
    );
  });

  void test('backup_last_success_timestamp never moves backwards', async () => {
    const metrics = new DrMetrics();
    const labels = { database: 'kimiclaw', tier: 'L1' };
    record(metrics, 'kimiclaw', 'L1', '2026-11-26T03:00:00.000Z', 5);
    record(metrics, 'kimiclaw', 'L1', '2026-11-26T02:00:00.000Z', 9);
    assert.equal(await gauge(metrics, 'backup_last_success_timestamp', labels), Date.UTC(2026, 10, 26, 3) / 1000);
    // The older backup's details do not replace the newer one's either.
    assert.equal(await gauge(metrics, 'backup_duration_seconds', labels), 5);
    assert.equal(await gauge(metrics, 'backup_size_bytes', labels), 500);

    record(metrics, 'kimiclaw', 'L1', '2026-11-26T04:00:00.500Z', 3);
    assert.equal(await gauge(metrics, 'backup_last_success_timestamp', labels), Date.UTC(2026, 10, 26, 4) / 1000 + 0.5);
    assert.equal(await gauge(metrics, 'backup_duration_seconds', labels), 3);
  });

  void test('each database and tier has its own timestamp', async () => {
    const metrics = new DrMetrics();
    record(metrics, 'kimiclaw', 'L1', '2026-11-26T05:00:00.000Z', 1);
    record(metrics, 'kimiclaw', 'L2', '2026-11-26T01:00:00.000Z', 2);
    record(metrics, 'audit', 'L1', '2026-11-26T02:00:00.000Z', 3);
    assert.equal(
      await gauge(metrics, 'backup_last_success_timestamp', { database: 'kimiclaw', tier: 'L2' }),
      Date.UTC(2026, 10, 26, 1) / 1000,
    );
    assert.equal(
      await gauge(metrics, 'backup_last_success_timestamp', { database: 'audit', tier: 'L1' }),
      Date.UTC(2026, 10, 26, 2) / 1000,
    );
  });

  void test('registry text carries the plan metrics with database and tier labels', async () => {
    const metrics = new DrMetrics();
    record(metrics, 'kimiclaw', 'L3', '2026-11-26T03:00:00.000Z', 4);
    metrics.backupFailures.inc({ database: 'kimiclaw', tier: 'L3', step: 'upload' });
    const text = await metrics.registry.metrics();
    const seconds = Date.UTC(2026, 10, 26, 3) / 1000;
    const lines = text.split('\n');
    for (const expected of [
      `backup_last_success_timestamp{database="kimiclaw",tier="L3"} ${seconds}`,
      'backup_duration_seconds{database="kimiclaw",tier="L3"} 4',
      'backup_size_bytes{database="kimiclaw",tier="L3"} 400',
      'backup_source_size_bytes{database="kimiclaw",tier="L3"} 4000',
      'backup_failures_total{database="kimiclaw",tier="L3",step="upload"} 1',
    ]) {
      assert.ok(lines.includes(expected), `missing line ${expected} in:\n${text}`);
    }
    for (const name of ['backup_last_success_timestamp', 'backup_duration_seconds', 'backup_size_bytes']) {
      assert.ok(lines.includes(`# TYPE ${name} gauge`), name);
    }
    assert.ok(lines.includes('# TYPE backup_failures_total counter'));
  });

  void test('default metrics are off unless asked for', async () => {
    assert.ok(!(await new DrMetrics().registry.metrics()).includes('process_cpu_user_seconds_total'));
    assert.ok(
      (await new DrMetrics({ defaultMetrics: true }).registry.metrics()).includes('process_cpu_user_seconds_total'),
    );
  });
});
