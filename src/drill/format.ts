/** Drill reports as text for the CLI (pure): the list, one report, and the trend per scenario. */
import { formatDuration } from '../duration';
import type { DrillReport, ScenarioTrend } from './report';

const secs = (ms: number | undefined) => (ms === undefined ? '—' : `${(ms / 1000).toFixed(2)} s`);
const when = (ms: number) => new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');

/** One line per drill, newest first: id, start, target, status, each scenario with its RTO and RPO. */
export function formatReportList(reports: readonly DrillReport[]): string {
  if (reports.length === 0) return 'no drill reports are stored yet';
  return [...reports]
    .sort((a, b) => b.startedAt - a.startedAt)
    .map((r) => {
      const scenarios = r.scenarios
        .map(
          (s) =>
            `${s.scenario} ${s.verdict.passed ? 'ok' : 'FAILED'} (RTO ${secs(s.measured?.rtoMs)}, RPO ${s.measured?.rpo.events ?? '—'})`,
        )
        .join('; ');
      return `${r.id}  ${when(r.startedAt)}  ${r.target}  ${r.status.toUpperCase()}  ${scenarios}`;
    })
    .join('\n');
}

/** A report: per scenario the verdict, why, the numbers next to the objectives, the phases, the healing. */
export function formatReport(r: DrillReport): string {
  const lines = [
    `drill ${r.id}: ${r.status.toUpperCase()} (cluster ${r.cluster}, target ${r.target}, ${r.reason})`,
    `started ${when(r.startedAt)}${r.endedAt ? `, ended ${when(r.endedAt)}` : ''}`,
    ...(r.error ? [`error: ${r.error}`] : []),
    ...(r.stack ? [`private stack: ${describeStack(r.stack)}`] : []),
  ];
  for (const s of r.scenarios) {
    const m = s.measured;
    lines.push(
      '',
      `${s.scenario}: ${s.verdict.passed ? 'passed' : 'FAILED'}`,
      ...s.verdict.reasons.map((why) => `  - ${why}`),
      `  RTO ${secs(m?.rtoMs)}${m?.rtoFrom ? ' from detection' : ''} (objective ${formatDuration(s.objective.rtoMs)}); ` +
        `RPO ${m ? `${m.rpo.events} events${m.rpo.events ? ` over ${secs(m.rpo.spanMs)}` : ''}` : '—'} ` +
        `(objective ${s.objective.rpoMs === 0 ? 'none lost' : formatDuration(s.objective.rpoMs)}); detection ${secs(m?.detectMs)}`,
      `  phases: ${s.phases.map((p) => `${p.name} ${p.endedAt === undefined ? 'unfinished' : secs(p.endedAt - p.startedAt)}${p.ok === false ? ' (failed)' : ''}`).join(', ')}`,
      `  healed: ${s.heal ? `${s.heal.healed ? 'yes' : 'NO'} after ${s.heal.attempts} attempt(s): ${s.heal.detail}` : 'did not run'}`,
    );
  }
  return lines.join('\n');
}

/** The private stack of an isolated drill in one line: its seed, its times, its teardown. */
export function describeStack(s: NonNullable<DrillReport['stack']>): string {
  const seed = s.backupId
    ? `restored from ${s.backupId}${s.restoredLsn === undefined ? '' : ` to LSN ${s.restoredLsn}`}`
    : 'not restored';
  const times = [
    s.restoreSeconds === undefined ? '' : `restore ${s.restoreSeconds.toFixed(1)} s`,
    s.startSeconds === undefined ? '' : `start ${s.startSeconds.toFixed(1)} s`,
  ].filter(Boolean);
  return `${seed}${s.host ? ` on ${s.host}'s host` : ''}${times.length ? ` (${times.join(', ')})` : ''}; ${s.tornDown ? 'torn down' : 'NOT torn down'}: ${s.detail}`;
}

/** Per scenario: runs, pass rate, RTO median and worst, RPO worst, the last run. */
export function formatTrend(trend: readonly ScenarioTrend[]): string {
  if (trend.length === 0) return 'no finished drills yet';
  const header = 'scenario            runs  passed  RTO median  RTO worst  RPO worst  last run';
  return [
    header,
    ...trend.map(
      (t) =>
        `${t.scenario.padEnd(18)}  ${String(t.runs).padStart(4)}  ${`${Math.round(t.passRate * 100)}%`.padStart(6)}  ` +
        `${secs(t.rtoMedianMs).padStart(10)}  ${secs(t.rtoWorstMs).padStart(9)}  ${String(t.rpoWorstEvents).padStart(9)}  ` +
        `${when(t.lastRunAt)} ${t.lastPassed ? 'passed' : 'FAILED'}`,
    ),
  ].join('\n');
}
