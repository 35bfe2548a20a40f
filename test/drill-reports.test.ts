/**
 * Drill reports in a real S3-compatible store (versitygw): saved as JSON and HTML beside the
 * backups, listed oldest first, and the drill metrics rebuilt from them as a starting worker does.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseConfig } from '../src/config';
import { createBucket, startVersitygw, type Versitygw } from '../src/dev/servers';
import { type DrillReport, judge } from '../src/drill/report';
import { drillReportPageKey, listReports, loadDrillMetrics, loadReport, saveReport } from '../src/drill/report-store';
import { DrMetrics } from '../src/metrics';
import { S3Store, createS3Client } from '../src/storage/s3';
import { runCli } from './harness';

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
  let configFile: string;

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
    configFile = join(dir, 'kimiclaw-dr.json');
    await writeFile(
      configFile,
      JSON.stringify({
        storage: {
          endpoint: s3.endpoint,
          bucket: BUCKET,
          accessKeyId: CREDS.accessKey,
          secretAccessKey: CREDS.secretKey,
        },
        databases: [
          { name: 'kimiclaw', nodes: [{ id: 'n1', url: 'http://127.0.0.1:7001', dataDir: join(dir, 'n1') }] },
        ],
      }),
      { mode: 0o600 },
    );
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

  void test('kimiclaw-dr drills list, show (with --html) and history read them; an unknown id is refused', async () => {
    const env = { ...process.env, DR_CONFIG: configFile };
    const list = await runCli(['drills', 'list'], env);
    assert.equal(list.code, 0, list.stderr);
    const lines = list.stdout.trim().split('\n');
    assert.deepEqual(
      lines.map((l) => l.split(/\s+/)[0]),
      ['drill-3', 'drill-2', 'drill-1'],
    );
    assert.match(lines[1]!, /FAILED\s+single-node FAILED \(RTO 9\.00 s, RPO 0\)/);
    const page = join(dir, 'drill-2.html');
    const show = await runCli(['drills', 'show', 'drill-2', '--html', page], env);
    assert.equal(show.code, 0, show.stderr);
    assert.match(show.stdout, /^drill drill-2: FAILED/);
    assert.match(show.stdout, /- RTO 9\.00 s missed the objective 5s by 4\.00 s/);
    assert.match(await readFile(page, 'utf8'), /data-scenario="single-node" data-passed="false"/);
    const history = await runCli(['drills', 'history'], env);
    assert.equal(history.code, 0, history.stderr);
    assert.match(history.stdout, /^single-node\s+2\s+50%\s+5\.25 s\s+9\.00 s\s+0\s+\S+ FAILED$/m);
    assert.match(history.stdout, /^zone-failure\s+1\s+100%/m);
    const missing = await runCli(['drills', 'show', 'drill-9'], env);
    assert.equal(missing.code, 1);
    assert.equal(
      missing.stderr.trim(),
      'kimiclaw-dr: id: no drill report "drill-9" is stored (kimiclaw-dr drills list shows them)',
    );
  });
});
