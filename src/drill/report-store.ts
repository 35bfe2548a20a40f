/**
 * Drill reports kept in the object store beside the backups: drills/<id>/report.json (the source
 * of truth) and drills/<id>/report.html (the page people read). The drill metrics are rebuilt from
 * them when a worker starts, so "drill overdue" and "drill failing" alerts survive a restart.
 */
import type { DrMetrics } from '../metrics';
import type { S3Store } from '../storage/s3';
import { type DrillReport, drillMetricValues } from './report';
import { renderReportHtml } from './report-html';

const PREFIX = 'drills/';
export const drillReportKey = (id: string) => `${PREFIX}${id}/report.json`;
export const drillReportPageKey = (id: string) => `${PREFIX}${id}/report.html`;

export async function saveReport(store: S3Store, report: DrillReport): Promise<{ json: string; html: string }> {
  const json = drillReportKey(report.id);
  const html = drillReportPageKey(report.id);
  // The page first: a report.json always has its page beside it.
  await store.putBytes(html, Buffer.from(renderReportHtml(report)));
  await store.putJson(json, report);
  return { json, html };
}

export async function loadReport(store: S3Store, id: string): Promise<DrillReport | undefined> {
  const text = await store.getText(drillReportKey(id));
  return text === undefined ? undefined : (JSON.parse(text) as DrillReport);
}

/** Every stored report, oldest first; one that cannot be read is named in `unreadable`. */
export async function listReports(store: S3Store): Promise<{ reports: DrillReport[]; unreadable: string[] }> {
  const keys = (await store.list(PREFIX)).map((o) => o.key).filter((k) => k.endsWith('/report.json'));
  const reports: DrillReport[] = [];
  const unreadable: string[] = [];
  for (const key of keys) {
    try {
      const text = await store.getText(key);
      if (text !== undefined) reports.push(JSON.parse(text) as DrillReport);
    } catch (err) {
      unreadable.push(`${key}: ${(err as Error).message}`);
    }
  }
  return { reports: reports.sort((a, b) => a.startedAt - b.startedAt), unreadable };
}

/** Sets the drill metrics from the newest finished run of each scenario. */
export function recordDrillMetrics(metrics: DrMetrics, reports: readonly DrillReport[]): void {
  for (const v of drillMetricValues(reports)) {
    const labels = { scenario: v.scenario };
    metrics.drillLastRun.set(labels, v.lastRunTimestamp);
    metrics.drillPassed.set(labels, v.passed);
    if (v.rtoSeconds !== undefined) metrics.drillRtoSeconds.set(labels, v.rtoSeconds);
    if (v.rpoEvents !== undefined) metrics.drillRpoEvents.set(labels, v.rpoEvents);
  }
}

/** At worker start: the drill metrics from the stored reports. */
export async function loadDrillMetrics(store: S3Store, metrics: DrMetrics): Promise<void> {
  recordDrillMetrics(metrics, (await listReports(store)).reports);
}
