/**
 * A drill's verdict, trend and metric values (src/drill/report.ts) and its HTML page
 * (src/drill/report-html.ts); the page's DOM in a real browser is the drill test's.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PLAN_OBJECTIVES } from '../../src/drill/input';
import {
  type DrillReport,
  type Measured,
  type ScenarioReport,
  drillMetricValues,
  judge,
  trend,
} from '../../src/drill/report';
import { renderReportHtml } from '../../src/drill/report-html';

const healed = { healed: true, attempts: 1, detail: 'steady: a1 primary, b1 in sync' };
const good: Measured = {
  rtoMs: 1_800,
  detectMs: 700,
  rpo: { events: 0, spanMs: 0 },
  acknowledged: 900,
  duplicated: 0,
  changed: 0,
};

function scenario(extra: Partial<ScenarioReport> = {}): ScenarioReport {
  const t0 = Date.parse('2026-11-30T03:00:00Z');
  const objective = { rtoMs: 5_000, rpoMs: 0 };
  const measured = extra.measured ?? good;
  return {
    scenario: 'single-node',
    objective,
    faultAt: t0 + 2_000,
    phases: [
      { name: 'steady', startedAt: t0, endedAt: t0 + 300 },
      { name: 'load', startedAt: t0 + 300, endedAt: t0 + 2_000 },
      { name: 'inject', startedAt: t0 + 2_000, endedAt: t0 + 2_010 },
      { name: 'recover', startedAt: t0 + 2_010, endedAt: t0 + 3_800 },
      { name: 'heal', startedAt: t0 + 4_000, endedAt: t0 + 9_000, detail: 'a1 <rejoined>' },
    ],
    measured,
    heal: healed,
    verdict: judge(objective, measured, healed),
    ...extra,
  };
}
function report(startedAt: number, scenarios: ScenarioReport[], status: DrillReport['status'] = 'passed'): DrillReport {
  return {
    id: `drill-${startedAt}`,
    cluster: 'kimiclaw',
    target: 'isolated',
    reason: 'quarterly',
    startedAt,
    endedAt: startedAt + 60_000,
    status,
    scenarios,
  };
}

void describe('judge', () => {
  const o = { rtoMs: 5_000, rpoMs: 0 };
  void test('met objectives and a healed cluster pass', () => {
    assert.deepEqual(judge(o, good, healed), { passed: true, reasons: [] });
  });
  void test('each miss says which objective and by how much', () => {
    assert.deepEqual(judge({ rtoMs: 1, rpoMs: 0 }, good, healed).reasons, [
      'RTO 1.80 s missed the objective 1ms by 1.80 s',
    ]);
    assert.deepEqual(judge(o, { ...good, rtoMs: undefined }, healed).reasons, [
      'RTO: no write was acknowledged after the fault',
    ]);
    assert.deepEqual(judge(o, { ...good, rpo: { events: 3, spanMs: 200 } }, healed).reasons, [
      'RPO: 3 acknowledged events lost (objective: none)',
    ]);
    assert.deepEqual(
      judge({ rtoMs: 60_000, rpoMs: 1_000 }, { ...good, rpo: { events: 40, spanMs: 2_500 } }, healed).reasons,
      ['RPO: 40 acknowledged events lost over 2.50 s, beyond the objective 1s by 1.50 s'],
    );
    assert.deepEqual(
      judge({ rtoMs: 60_000, rpoMs: 1_000 }, { ...good, rpo: { events: 40, spanMs: 500 } }, healed).passed,
      true,
    );
    assert.deepEqual(judge(o, { ...good, duplicated: 2, changed: 1 }, healed).reasons, [
      '2 acknowledged events are held twice',
      '1 acknowledged events are held at another place',
    ]);
    assert.deepEqual(judge(o, good, { healed: false, attempts: 7, detail: 'b1 does not answer' }).reasons, [
      'not healed: b1 does not answer',
    ]);
    assert.deepEqual(judge(o, undefined, undefined).reasons, [
      'nothing was measured (the scenario did not reach its measurement)',
      'not healed: healing did not run',
    ]);
  });
});

void describe('trend and metric values', () => {
  const slow = scenario({ measured: { ...good, rtoMs: 9_000 } });
  const reports = [
    report(1_000, [scenario()]),
    report(2_000, [slow], 'failed'),
    report(3_000, [scenario({ measured: { ...good, rtoMs: 1_000 } })]),
    report(4_000, [scenario({ measured: { ...good, rtoMs: 100 } })], 'running'),
  ];
  void test('per scenario: pass rate, RTO median and worst, RPO worst; a running drill is left out', () => {
    assert.deepEqual(trend(reports), [
      {
        scenario: 'single-node',
        runs: 3,
        passed: 2,
        passRate: 2 / 3,
        rtoMedianMs: 1_800,
        rtoWorstMs: 9_000,
        rpoWorstEvents: 0,
        lastRunAt: 3_000,
        lastPassed: true,
      },
    ]);
  });
  void test('the metrics follow the newest finished run of each scenario', () => {
    assert.deepEqual(drillMetricValues(reports), [
      { scenario: 'single-node', lastRunTimestamp: 3, passed: 1, rtoSeconds: 1, rpoEvents: 0 },
    ]);
    assert.equal(drillMetricValues([report(1, [slow], 'failed')])[0]!.passed, 0);
    assert.deepEqual(PLAN_OBJECTIVES['single-node'], { rtoMs: 300_000, rpoMs: 0 });
  });
});

void describe('renderReportHtml', () => {
  void test('per scenario: verdict, reasons, measured next to objectives, a timeline of every phase; text escaped', () => {
    const failing = scenario({ scenario: 'zone-failure', objective: { rtoMs: 1, rpoMs: 0 } });
    failing.verdict = judge(failing.objective, failing.measured, failing.heal);
    const html = renderReportHtml(report(Date.parse('2026-11-30T03:00:00Z'), [scenario(), failing], 'failed'));
    assert.match(html, /<h1 data-status="failed">Drill drill-\d+: failed<\/h1>/);
    assert.match(html, /<section class="scenario" data-scenario="single-node" data-passed="true">/);
    assert.match(html, /<section class="scenario" data-scenario="zone-failure" data-passed="false">/);
    assert.match(html, /<li>RTO 1.80 s missed the objective 1ms by 1.80 s<\/li>/);
    assert.match(html, /data-measure="RTO" data-value="1800">1.80 s<\/td><td>5s<\/td>/);
    assert.match(html, /data-measure="RPO" data-value="0">0 events lost<\/td><td>none lost<\/td>/);
    for (const phase of ['steady', 'load', 'inject', 'recover', 'heal']) {
      assert.equal(html.match(new RegExp(`data-phase="${phase}"`, 'g'))?.length, 2, phase);
    }
    assert.match(html, /<line class="fault"/);
    assert.match(html, /a1 &lt;rejoined&gt;/);
    assert.ok(!html.includes('<rejoined>'));
  });
});
