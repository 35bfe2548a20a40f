/**
 * Drill reports in a real S3-compatible store (versitygw): saved as JSON and HTML beside the
 * backups, listed oldest first, and the drill metrics rebuilt from them as a starting worker does.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseConfig } from '../src/config';
import { createBucket, startVersitygw, type Versitygw } from '../src/dev/servers';
import { type DrillReport, judge } from '../src/drill/report';
import { drillReportPageKey, listReports, loadDrillMetrics, loadReport, saveReport } from '../src/drill/report-store';
import { DrMetrics } from '../src/metrics';
import { S3Store, createS3Client } from '../src/storage/s3';

const CREDS = { accessKey: 'kimiclaw-drills', secretKey: 'kimiclaw-drills-secret' };
const BUCKET = 'kimiclaw-drills';

function report(id: string, startedAt: number, scenario: 'single-node' | 'zone-failure', rtoMs: number): DrillReport {
  const objective = { rtoMs: 5_000, rpoMs: 0 };
  const measured = { rtoMs, rpo: { events: 0, spanMs: 0 }, acknowledged: 500, duplicated: 0, changed: 0 };
  const heal = { healed: true, attempts: 1, detail: 'steady' };
  const verdict = judge(objective, measured, heal);
  return {
    id,
    cluster: 'kimiclaw',
    target: 'isolated',
    reason: 'test',
    startedAt,
    endedAt: startedAt + 30_000,
    status: verdict.passed ? 'passed' : 'failed',
    scenarios: [
      {
        scenario,
        objective,
        phases: [{ name: 'steady', startedAt, endedAt: startedAt + 10 }],
        measured,
        heal,
        verdict,
      },
    ],
  };
}

void describe('drill reports in the object store', () => {
  let dir: string;
  let s3: Versitygw;
  let store: S3Store;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kimiclaw-drill-reports-'));
    s3 = await startVersitygw({ dir: join(dir, 's3'), ...CREDS });
    await createBucket(s3.endpoint, CREDS, BUCKET);
    const storage = parseConfig({
      storage: {
        endpoint: s3.endpoint,
        bucket: BUCKET,
        accessKeyId: CREDS.accessKey,
        secretAccessKey: CREDS.secretKey,
      },
      databases: [{ name: 'kimiclaw', nodes: [{ id: 'n1', url: 'http://127.0.0.1:7001', dataDir: '/tmp/n1' }] }],
    }).storage;
    store = new S3Store(createS3Client(storage), storage);
  });
  after(async () => {
    await s3?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  void test('saved, listed oldest first, read back, and the metrics rebuilt from the newest of each scenario', async () => {
    const t = Date.parse('2026-10-01T03:00:00Z');
    await saveReport(store, report('drill-2', t + 2_000, 'single-node', 9_000));
    await saveReport(store, report('drill-1', t, 'single-node', 1_500));
    await saveReport(store, report('drill-3', t + 3_000, 'zone-failure', 2_000));
    const { reports, unreadable } = await listReports(store);
    assert.deepEqual(unreadable, []);
    assert.deepEqual(
      reports.map((r) => r.id),
      ['drill-1', 'drill-2', 'drill-3'],
    );
    assert.deepEqual(await loadReport(store, 'drill-2'), report('drill-2', t + 2_000, 'single-node', 9_000));
    assert.equal(await loadReport(store, 'nope'), undefined);
    const page = await store.getText(drillReportPageKey('drill-2'));
    assert.match(page ?? '', /data-scenario="single-node" data-passed="false"/);

    const metrics = new DrMetrics();
    await loadDrillMetrics(store, metrics);
    const text = await metrics.registry.metrics();
    const value = (name: string, scenario: string) =>
      Number(new RegExp(`^${name}\\{scenario="${scenario}"\\} (\\S+)$`, 'm').exec(text)?.[1]);
    // The newest single-node drill (drill-2) failed its RTO; the zone drill passed.
    assert.equal(value('drill_passed', 'single-node'), 0);
    assert.equal(value('drill_rto_seconds', 'single-node'), 9);
    assert.equal(value('drill_last_run_timestamp', 'single-node'), (t + 2_000) / 1000);
    assert.equal(value('drill_passed', 'zone-failure'), 1);
    assert.equal(value('drill_rpo_events', 'zone-failure'), 0);
  });
});
