/**
 * The drill report's HTML page in a real headless browser (Debian Chromium, driven by
 * puppeteer-core): it renders, and its DOM holds the verdicts, the measured numbers next to the
 * objectives, and a timeline bar for every phase of every scenario.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import puppeteer, { type Browser } from 'puppeteer-core';
import { ensureChromium } from '../src/dev/chromium';
import { type DrillReport, type Measured, type ScenarioReport, judge } from '../src/drill/report';
import { renderReportHtml } from '../src/drill/report-html';

const T0 = Date.parse('2026-11-30T03:00:00Z');

/** The little of the DOM the page check uses (the project compiles without the DOM library). */
interface El {
  getAttribute(name: string): string | null;
  querySelector(selector: string): El | null;
  querySelectorAll(selector: string): ArrayLike<El>;
  textContent: string | null;
  nextElementSibling: El | null;
  parentElement: El | null;
  getBoundingClientRect(): { width: number; height: number };
}
declare const document: El;

function scenario(name: ScenarioReport['scenario'], rtoMs: number, objectiveRtoMs: number): ScenarioReport {
  const measured: Measured = {
    rtoMs,
    detectMs: 600,
    rpo: { events: 0, spanMs: 0 },
    acknowledged: 1_200,
    duplicated: 0,
    changed: 0,
  };
  const heal = { healed: true, attempts: 1, detail: 'steady again' };
  const objective = { rtoMs: objectiveRtoMs, rpoMs: 0 };
  return {
    scenario: name,
    objective,
    faultAt: T0 + 2_000,
    phases: [
      { name: 'steady', startedAt: T0, endedAt: T0 + 200 },
      { name: 'load', startedAt: T0 + 200, endedAt: T0 + 2_000 },
      { name: 'inject', startedAt: T0 + 2_000, endedAt: T0 + 2_020 },
      { name: 'detect', startedAt: T0 + 2_020, endedAt: T0 + 2_600 },
      { name: 'recover', startedAt: T0 + 2_600, endedAt: T0 + 2_000 + rtoMs },
      { name: 'measure', startedAt: T0 + 2_000 + rtoMs, endedAt: T0 + 4_500 + rtoMs },
      { name: 'heal', startedAt: T0 + 4_500 + rtoMs, endedAt: T0 + 12_000 + rtoMs },
      { name: 'verify', startedAt: T0 + 12_000 + rtoMs, endedAt: T0 + 12_500 + rtoMs },
    ],
    measured,
    heal,
    verdict: judge(objective, measured, heal),
  };
}

void describe('the drill report in a headless browser', () => {
  let dir: string;
  let browser: Browser;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kimiclaw-drill-report-'));
    browser = await puppeteer.launch({
      executablePath: await ensureChromium(),
      headless: true,
      // Tests run as root, where Chromium's sandbox cannot start.
      args: ['--no-sandbox', '--disable-gpu'],
    });
  });
  after(async () => {
    await browser?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  void test('verdicts, numbers next to objectives, a timeline bar per phase', async () => {
    const report: DrillReport = {
      id: 'drill-kimiclaw-20261130T0300Z',
      cluster: 'kimiclaw',
      target: 'isolated',
      reason: 'quarterly drill',
      startedAt: T0,
      endedAt: T0 + 60_000,
      status: 'failed',
      scenarios: [scenario('single-node', 1_850, 5_000), scenario('zone-failure', 2_400, 1)],
    };
    const file = join(dir, 'report.html');
    await writeFile(file, renderReportHtml(report));
    const page = await browser.newPage();
    await page.setViewport({ width: 900, height: 900 });
    await page.goto(`file://${file}`);
    const seen = await page.evaluate(() => ({
      status: document.querySelector('h1')?.getAttribute('data-status'),
      scenarios: Array.from(document.querySelectorAll('section.scenario')).map((s) => ({
        name: s.getAttribute('data-scenario'),
        passed: s.getAttribute('data-passed'),
        rto: s.querySelector('td[data-measure="RTO"]')?.textContent,
        objective: s.querySelector('td[data-measure="RTO"]')?.nextElementSibling?.textContent,
        reasons: Array.from(s.querySelectorAll('ul.reasons li')).map((li) => li.textContent),
        bars: Array.from(s.querySelectorAll('svg.timeline g.phase rect')).map((r) => {
          const box = r.getBoundingClientRect();
          return { phase: r.parentElement?.getAttribute('data-phase'), width: box.width, height: box.height };
        }),
        fault: s.querySelector('svg.timeline line.fault') !== null,
      })),
    }));
    assert.equal(seen.status, 'failed');
    assert.deepEqual(
      seen.scenarios.map((s) => [s.name, s.passed, s.rto, s.objective]),
      [
        ['single-node', 'true', '1.85 s', '5s'],
        ['zone-failure', 'false', '2.40 s', '1ms'],
      ],
    );
    assert.deepEqual(seen.scenarios[1]!.reasons, ['RTO 2.40 s missed the objective 1ms by 2.40 s']);
    for (const s of seen.scenarios) {
      assert.deepEqual(
        s.bars.map((b) => b.phase),
        ['steady', 'load', 'inject', 'detect', 'recover', 'measure', 'heal', 'verify'],
      );
      for (const b of s.bars)
        assert.ok(b.width >= 2 && b.height > 0, `${s.name} ${b.phase} bar is drawn (${b.width}×${b.height})`);
      assert.ok(s.fault, `${s.name}: the fault is marked on the timeline`);
    }
    const shot = join(dir, 'report.png');
    await page.screenshot({ path: shot as `${string}.png`, fullPage: true });
    assert.ok((await stat(shot)).size > 10_000, 'the screenshot has content');
  });
});
