/**
 * The plan's metrics, in one prom-client registry served by the worker at /metrics. Temporal's own
 * SDK metrics (exported by the SDK runtime on a loopback port) are appended to the same page so
 * one scrape target carries both.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export class DrMetrics {
  readonly registry = new Registry();

  readonly backupLastSuccess = new Gauge({
    name: 'backup_last_success_timestamp',
    help: 'Unix time (seconds) the newest verified backup of a tier completed',
    labelNames: ['database', 'tier'] as const,
    registers: [this.registry],
  });

  readonly backupDuration = new Gauge({
    name: 'backup_duration_seconds',
    help: 'Duration of the last successful backup of a tier, snapshot to manifest',
    labelNames: ['database', 'tier'] as const,
    registers: [this.registry],
  });

  readonly backupSize = new Gauge({
    name: 'backup_size_bytes',
    help: 'Stored (compressed) size of the last successful backup of a tier',
    labelNames: ['database', 'tier'] as const,
    registers: [this.registry],
  });

  readonly backupSourceSize = new Gauge({
    name: 'backup_source_size_bytes',
    help: 'Size of the database snapshot behind the last successful backup of a tier',
    labelNames: ['database', 'tier'] as const,
    registers: [this.registry],
  });

  readonly backupFailures = new Counter({
    name: 'backup_failures_total',
    help: 'Backups that failed, by the step they failed at',
    labelNames: ['database', 'tier', 'step'] as const,
    registers: [this.registry],
  });

  /**
   * Computed at each scrape from the oldest acknowledged event the archiver knows to be unarchived,
   * so it keeps growing while a pass hangs on an object store that does not answer.
   */
  readonly rpoSeconds = new Gauge({
    name: 'rpo_seconds',
    help: 'Age of the oldest acknowledged event not yet in the off-site log archive, as of the scrape',
    labelNames: ['database'] as const,
    registers: [this.registry],
    collect: () => this.collectRpo(),
  });

  /** Per database: the commit time (epoch ms) of the oldest acknowledged event not archived, or null. */
  private readonly oldestUnarchived = new Map<string, number | null>();

  readonly archiveLag = new Histogram({
    name: 'archive_lag_seconds',
    help: 'Age of the oldest unarchived event when each archive pass started',
    labelNames: ['database'] as const,
    buckets: [0.5, 1, 2, 5, 10, 15, 20, 30, 60, 120, 300],
    registers: [this.registry],
  });

  readonly archivedLsn = new Gauge({
    name: 'archive_last_lsn',
    help: 'Highest LSN sealed in the off-site log archive',
    labelNames: ['database'] as const,
    registers: [this.registry],
  });

  readonly archivePasses = new Counter({
    name: 'archive_passes_total',
    help: 'Archive passes made, whether they sealed anything or failed: the archiver is alive',
    labelNames: ['database'] as const,
    registers: [this.registry],
  });

  readonly archiveFailures = new Counter({
    name: 'archive_failures_total',
    help: 'Archive passes that failed (node or object store unreachable …)',
    labelNames: ['database'] as const,
    registers: [this.registry],
  });

  readonly regionCopyLag = new Gauge({
    name: 'region_copy_lag_seconds',
    help: "Age of the oldest object of the primary region's store that the standby region's store lacked at the last copy pass (0: the standby has everything)",
    labelNames: ['region'] as const,
    registers: [this.registry],
  });

  readonly regionCopyLastPass = new Gauge({
    name: 'region_copy_last_pass_timestamp',
    help: 'Unix time of the last complete copy pass to the standby region',
    labelNames: ['region'] as const,
    registers: [this.registry],
  });

  readonly rtoSeconds = new Gauge({
    name: 'rto_seconds',
    help: 'Measured recovery time of the last recovery: a restore (start to the node answering with the restored data) or a failover (first failed probe to the new primary published)',
    labelNames: ['database'] as const,
    registers: [this.registry],
  });

  readonly restoreTestLastRun = new Gauge({
    name: 'restore_test_last_run',
    help: 'Unix time (seconds) of the last successful restore test',
    labelNames: ['database'] as const,
    registers: [this.registry],
  });

  readonly restoreTestPassed = new Gauge({
    name: 'restore_test_passed',
    help: 'Outcome of the last restore test of a tier: 1 passed, 0 failed',
    labelNames: ['database', 'tier'] as const,
    registers: [this.registry],
  });

  readonly replicationLagLsn = new Gauge({
    name: 'replication_lag_lsn',
    help: 'Batches the replica has not applied yet, as its primary reports it (probed by monitorCluster)',
    labelNames: ['database', 'replica', 'mode'] as const,
    registers: [this.registry],
  });

  readonly replicationLastAck = new Gauge({
    name: 'replication_last_ack_seconds',
    help: 'Seconds since the replica last confirmed to its primary',
    labelNames: ['database', 'replica', 'mode'] as const,
    registers: [this.registry],
  });

  readonly clusterEpoch = new Gauge({
    name: 'cluster_epoch',
    help: 'Fencing epoch of the current primary',
    labelNames: ['database'] as const,
    registers: [this.registry],
  });

  readonly failovers = new Counter({
    name: 'failovers_total',
    help: 'Completed failovers and switchovers',
    labelNames: ['database', 'kind'] as const,
    registers: [this.registry],
  });

  readonly failoverRtoSeconds = new Gauge({
    name: 'failover_rto_seconds',
    help: 'Time from the primary failing (first failed probe) to the new primary being published, last failover',
    labelNames: ['database'] as const,
    registers: [this.registry],
  });

  // Drills (docs/architecture.md, "Drills"): their own metrics, per scenario; rto_seconds and
  // rpo_seconds keep meaning the last real recovery and the live archive lag.
  readonly drillRtoSeconds = new Gauge({
    name: 'drill_rto_seconds',
    help: "The last finished drill's measured RTO: the fault to the first write acknowledged afterwards",
    labelNames: ['scenario'] as const,
    registers: [this.registry],
  });

  readonly drillRpoEvents = new Gauge({
    name: 'drill_rpo_events',
    help: "The last finished drill's RPO: acknowledged events missing afterwards",
    labelNames: ['scenario'] as const,
    registers: [this.registry],
  });

  readonly drillLastRun = new Gauge({
    name: 'drill_last_run_timestamp',
    help: 'Unix time (seconds) the last finished drill of the scenario started',
    labelNames: ['scenario'] as const,
    registers: [this.registry],
  });

  readonly drillPassed = new Gauge({
    name: 'drill_passed',
    help: 'Outcome of the last finished drill of the scenario: 1 passed, 0 failed',
    labelNames: ['scenario'] as const,
    registers: [this.registry],
  });

  private readonly lastSuccess = new Map<string, number>();

  constructor(options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics) collectDefaultMetrics({ register: this.registry });
  }

  /** The archiver's view: the oldest acknowledged event it has not archived yet (null: none). */
  setOldestUnarchived(database: string, committedAtMs: number | null): void {
    this.oldestUnarchived.set(database, committedAtMs);
  }

  private collectRpo(): void {
    const now = Date.now();
    for (const [database, at] of this.oldestUnarchived) {
      this.rpoSeconds.set({ database }, at === null ? 0 : Math.max(0, (now - at) / 1000));
    }
  }

  recordBackup(m: {
    database: string;
    tier: string;
    completedAt: Date;
    durationSeconds: number;
    storedBytes: number;
    sourceBytes: number;
  }): void {
    const labels = { database: m.database, tier: m.tier };
    // Never move the timestamp backwards (a late retry of an older backup, or catalog reload).
    const key = `${m.database}/${m.tier}`;
    const seconds = m.completedAt.getTime() / 1000;
    if ((this.lastSuccess.get(key) ?? -1) < seconds) {
      this.lastSuccess.set(key, seconds);
      this.backupLastSuccess.set(labels, seconds);
      this.backupDuration.set(labels, m.durationSeconds);
      this.backupSize.set(labels, m.storedBytes);
      this.backupSourceSize.set(labels, m.sourceBytes);
    }
  }
}

export interface MetricsServer {
  url: string;
  close(): Promise<void>;
}

/** Serves /metrics; `extra` returns more exposition text to append (the SDK's metrics). */
export async function serveMetrics(
  metrics: DrMetrics,
  options: { host: string; port: number; extra?: () => Promise<string> },
): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('see /metrics\n');
      return;
    }
    void (async () => {
      try {
        const ours = await metrics.registry.metrics();
        const extra = options.extra ? await options.extra().catch(() => '') : '';
        res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(`${ours}\n${extra}`);
      } catch (err) {
        res.writeHead(500, { 'content-type': 'text/plain' }).end(String(err));
      }
    })();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, resolve);
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${options.host}:${port}/metrics`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
