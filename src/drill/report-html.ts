/**
 * A drill's report as one self-contained HTML page (no scripts, no external assets): per scenario
 * the verdict and why, the measured RTO and RPO next to the objectives, and a timeline of the
 * phases as SVG on one time axis from the scenario's start. Elements carry data-* attributes
 * (scenario, phase, measured values) so the page can be checked in a browser.
 */
import { describeStack } from './format';
import { formatDuration } from '../duration';
import type { DrillReport, ScenarioReport } from './report';

const escape = (text: string) =>
  text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
const iso = (ms: number) => new Date(ms).toISOString();
const secs = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

const PHASE_COLOURS: Record<string, string> = {
  steady: '#8da0cb',
  prepare: '#80b1d3',
  load: '#66c2a5',
  inject: '#e41a1c',
  detect: '#fc8d62',
  recover: '#ffd92f',
  measure: '#a6d854',
  heal: '#e78ac3',
  verify: '#b3b3b3',
};

/** The phases as bars on one axis: x is time since the scenario's first phase began. */
function timeline(s: ScenarioReport): string {
  const start = Math.min(...s.phases.map((p) => p.startedAt));
  const end = Math.max(...s.phases.map((p) => p.endedAt ?? p.startedAt), s.faultAt ?? start);
  const span = Math.max(1, end - start);
  const width = 760;
  const left = 90;
  const row = 22;
  const x = (t: number) => left + ((t - start) / span) * (width - left - 10);
  const bars = s.phases
    .map((p, i) => {
      const x0 = x(p.startedAt);
      const x1 = Math.max(x0 + 2, x(p.endedAt ?? p.startedAt));
      const y = 10 + i * row;
      const took = p.endedAt === undefined ? 'not finished' : secs(p.endedAt - p.startedAt);
      return (
        `<g class="phase" data-phase="${p.name}" data-ms="${p.endedAt === undefined ? '' : p.endedAt - p.startedAt}">` +
        `<text x="4" y="${y + 13}" font-size="12">${p.name}</text>` +
        `<rect x="${x0.toFixed(1)}" y="${y}" width="${(x1 - x0).toFixed(1)}" height="${row - 6}" fill="${PHASE_COLOURS[p.name] ?? '#999'}"` +
        `${p.ok === false ? ' stroke="#e41a1c" stroke-width="2"' : ''}><title>${escape(`${p.name}: ${took}${p.detail ? ` — ${p.detail}` : ''}`)}</title></rect>` +
        `</g>`
      );
    })
    .join('');
  const height = 20 + s.phases.length * row + 20;
  const fault =
    s.faultAt === undefined
      ? ''
      : `<line class="fault" x1="${x(s.faultAt).toFixed(1)}" x2="${x(s.faultAt).toFixed(1)}" y1="4" y2="${height - 18}" stroke="#e41a1c" stroke-dasharray="4 3"/>` +
        `<text x="${(x(s.faultAt) + 3).toFixed(1)}" y="${height - 6}" font-size="11" fill="#e41a1c">fault</text>`;
  return (
    `<svg class="timeline" data-scenario="${s.scenario}" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${s.scenario} timeline">` +
    `${bars}${fault}<text x="${width - 10}" y="${height - 6}" font-size="11" text-anchor="end">${secs(span)}</text></svg>`
  );
}

function scenarioSection(s: ScenarioReport): string {
  const m = s.measured;
  const cell = (name: string, value: string, objective: string, raw: string) =>
    `<tr><th>${name}</th><td class="measured" data-measure="${name}" data-value="${raw}">${value}</td><td>${objective}</td></tr>`;
  const rows = [
    cell(
      'RTO',
      m?.rtoMs === undefined ? 'no write acknowledged' : `${secs(m.rtoMs)}${m.rtoFrom ? ' from detection' : ''}`,
      formatDuration(s.objective.rtoMs),
      String(m?.rtoMs ?? ''),
    ),
    cell(
      'RPO',
      m ? `${m.rpo.events} events lost${m.rpo.events ? ` over ${secs(m.rpo.spanMs)}` : ''}` : 'not measured',
      s.objective.rpoMs === 0 ? 'none lost' : formatDuration(s.objective.rpoMs),
      String(m?.rpo.events ?? ''),
    ),
    cell('detection', m?.detectMs === undefined ? '—' : secs(m.detectMs), '—', String(m?.detectMs ?? '')),
    cell('acknowledged', m ? String(m.acknowledged) : '—', '—', String(m?.acknowledged ?? '')),
  ].join('');
  const why = s.verdict.reasons.length
    ? `<ul class="reasons">${s.verdict.reasons.map((r) => `<li>${escape(r)}</li>`).join('')}</ul>`
    : '';
  const heal = s.heal
    ? `<p class="heal" data-healed="${s.heal.healed}">healed: ${s.heal.healed ? 'yes' : 'NO'} after ${s.heal.attempts} attempt(s) — ${escape(s.heal.detail)}</p>`
    : '';
  return (
    `<section class="scenario" data-scenario="${s.scenario}" data-passed="${s.verdict.passed}">` +
    `<h2>${s.scenario} <span class="${s.verdict.passed ? 'pass' : 'fail'}">${s.verdict.passed ? 'passed' : 'FAILED'}</span></h2>` +
    `${why}<table><tr><th></th><th>measured</th><th>objective</th></tr>${rows}</table>${heal}${timeline(s)}</section>`
  );
}

export function renderReportHtml(report: DrillReport): string {
  const title = `Drill ${report.id}: ${report.status}`;
  return [
    '<!doctype html><html lang="en"><head><meta charset="utf-8">',
    `<title>${escape(title)}</title>`,
    '<style>body{font:14px system-ui,sans-serif;margin:2em;max-width:820px}table{border-collapse:collapse;margin:.5em 0}',
    'th,td{padding:2px 10px;text-align:left;border-bottom:1px solid #ddd}.pass{color:#1a7f37}.fail{color:#cf222e}',
    'section{margin:1.5em 0;padding-top:.5em;border-top:2px solid #eee}</style></head><body>',
    `<h1 data-status="${report.status}">${escape(title)}</h1>`,
    `<p>cluster ${escape(report.cluster)} · target ${report.target} · ${escape(report.reason)} · ` +
      `started ${iso(report.startedAt)}${report.endedAt ? ` · ended ${iso(report.endedAt)}` : ''}</p>`,
    ...(report.error ? [`<p class="fail error">${escape(report.error)}</p>`] : []),
    ...(report.stack ? [`<p class="stack">private stack: ${escape(describeStack(report.stack))}</p>`] : []),
    ...report.scenarios.map(scenarioSection),
    '</body></html>',
  ].join('\n');
}
