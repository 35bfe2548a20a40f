/**
 * kimiclaw-dr <verb>: the operator's command line. Every verb has --json for machines; errors say
 * what is wrong and what to do, and exit non-zero.
 */
import { Command, Option } from 'commander';
import { ConfigError, loadConfig, type Config } from '../config';
import { DEFAULT_DATABASE, TIERS, type Tier } from '../domain';
import { NodeClient } from '../node-client';
import { InputProblem } from '../errors';
import { InvalidInputError, KimiclawDr, connectTemporal } from '../client';
import { describeVerification } from '../backup/content-check';
import { findBackup, listCatalog, verifyStoredBackup, type VerifyReport } from '../catalog';
import { applySchedules, describeSchedules, pauseSchedule, resumeSchedule, triggerSchedule } from '../schedules';
import { describeLease } from '../config-center/lease';
import { Stores } from '../storage/stores';
import { parseLocalNodes, resolveLocalNodes } from '../local-nodes';
import { describeSync, formatBackupTable, formatBytes, printJson } from './format';
import { parseInput } from '../backup/input';
import { RestoreInputSchema, type RestoreInput } from '../restore/input';
import { followWorkflow } from './progress';
import type { BackupResult } from '../workflows/backup';
import type { RestoreResult } from '../workflows/restore';

const program = new Command('kimiclaw-dr')
  .description('Disaster recovery for the kimiclaw events service, as durable Temporal workflows')
  .showHelpAfterError();

const tierOption = () => new Option('--tier <tier>', 'backup tier').choices([...TIERS]);

function config(): Config {
  return loadConfig();
}

/** Stores as this host reaches them: L1 only of the nodes DR_NODES names (default: all). */
async function withStores<T>(fn: (config: Config, stores: Stores) => Promise<T>): Promise<T> {
  const cfg = config();
  const stores = new Stores(cfg, { localNodes: resolveLocalNodes(cfg, parseLocalNodes(process.env.DR_NODES)) });
  try {
    return await fn(cfg, stores);
  } finally {
    stores.destroy();
  }
}

program
  .command('start')
  .description(
    'run everything on this host: Temporal dev server + UI, S3 server, a kimiclaw node, the worker, schedules',
  )
  .option('--data-dir <dir>', 'where state is kept', '.data')
  .addOption(
    new Option(
      '--topology <kind>',
      'single: two nodes on this host; zones: nodes a1, a2 (zone a) and b1 (zone b), etcd members in zones a, b, c',
    )
      .choices(['single', 'zones'])
      .default('single'),
  )
  .action(async (opts: { dataDir: string; topology: 'single' | 'zones' }) => {
    const { runStart } = await import('./start');
    await runStart({ dataDir: opts.dataDir, topology: opts.topology });
  });

program
  .command('worker')
  .description('run the worker (workflows, activities, /metrics); DR_NODES=node1,… (or none) names the local nodes')
  .action(async () => {
    await import('../worker').then((m) => m.runWorkerMain());
  });

program
  .command('backup')
  .description('start a backup of one tier')
  .addOption(tierOption().makeOptionMandatory())
  .option('--database <name>', 'database to back up (default: kimiclaw)')
  .option('--node <id>', 'node to snapshot (default: the primary)')
  .option('--reason <text>', 'why, recorded with the backup')
  .option('--wait', 'wait for the result, with a progress bar')
  .option('--json', 'print JSON')
  .action(
    async (opts: { tier: Tier; database?: string; node?: string; reason?: string; wait?: boolean; json?: boolean }) => {
      const dr = await KimiclawDr.connect(config());
      const handle = await dr.startBackup({
        tier: opts.tier,
        ...(opts.database ? { database: opts.database } : {}),
        ...(opts.node ? { node: opts.node } : {}),
        reason: opts.reason ?? 'manual (cli)',
      });
      if (!opts.wait) {
        if (opts.json) printJson({ workflowId: handle.workflowId, runId: handle.firstExecutionRunId });
        else console.log(`started backup workflow ${handle.workflowId}`);
        return;
      }
      const result = await followWorkflow<BackupResult>(dr.client, handle.workflowId, !opts.json);
      if (opts.json) {
        printJson(result);
        return;
      }
      console.log(
        [
          `backup ${result.backupId} verified and stored`,
          `  location   ${result.location}`,
          `  rows       ${result.rows.toLocaleString('en-US')} (LSN ${result.lsn})`,
          `  size       ${formatBytes(result.bytesBefore)} → ${formatBytes(result.bytesAfter)} (${result.compression}, ${(result.bytesBefore / Math.max(1, result.bytesAfter)).toFixed(1)}×)`,
          `  sha256     ${result.sha256}`,
          `  duration   ${result.durationSeconds.toFixed(1)} s, writes stalled ${result.writeStallMs} ms`,
          `  pruned     ${'error' in result.pruned ? `failed: ${result.pruned.error}` : result.pruned.deleted.map((d) => d.backupId).join(', ') || 'nothing'}`,
        ].join('\n'),
      );
    },
  );

/** "4711-4713,5020" → [{ fromLsn: 4711, toLsn: 4713 }, { fromLsn: 5020, toLsn: 5020 }]; the input schema checks the rest. */
function parseLsnRanges(value: string): Array<{ fromLsn: number; toLsn: number }> {
  return value.split(',').map((part) => {
    const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(part);
    if (!m) {
      throw new InputProblem('excludeLsns', `"${part}" is not an LSN or a range of LSNs (e.g. 4711 or 4711-4713)`);
    }
    return { fromLsn: Number(m[1]), toLsn: Number(m[2] ?? m[1]) };
  });
}

program
  .command('restore')
  .description('restore a database: newest verified backup at or before the target, then the archived log')
  .option('--database <name>', 'database', 'kimiclaw')
  .option('--backup <id>', 'a backup id, or "latest"')
  .option('--at <time>', 'point in time, ISO-8601 with timezone (e.g. 2026-11-26T09:30:00Z)')
  .option('--to-lsn <lsn>', 'restore up to and including this LSN', (v) => Number(v))
  .addOption(
    new Option('--target <target>', "replace the node's database, or restore beside it").choices([
      'in-place',
      'scratch',
    ]),
  )
  .option('--scratch-dir <dir>', "where a scratch restore writes (on the node's host)")
  .option('--node <id>', 'node to restore (default: the primary)')
  .option(
    '--exclude-lsns <ranges>',
    'leave these batches out, keeping every write around them: LSNs or ranges, e.g. 4711-4713,5020',
    parseLsnRanges,
  )
  .option('--accept-loss', 'restore even when acknowledged writes would not come back (they are counted)')
  .option('--preview', 'say which backup and log segments would be used; change nothing')
  .option('--wait', 'wait for the result, with progress')
  .option('--json', 'print JSON')
  .action(
    async (opts: {
      database: string;
      backup?: string;
      at?: string;
      toLsn?: number;
      target?: 'in-place' | 'scratch';
      scratchDir?: string;
      node?: string;
      excludeLsns?: Array<{ fromLsn: number; toLsn: number }>;
      acceptLoss?: boolean;
      preview?: boolean;
      wait?: boolean;
      json?: boolean;
    }) => {
      const input: RestoreInput = {
        database: opts.database,
        ...(opts.backup ? { backupId: opts.backup } : {}),
        ...(opts.at ? { pointInTime: opts.at } : {}),
        ...(opts.toLsn !== undefined ? { toLsn: opts.toLsn } : {}),
        ...(opts.target ? { target: opts.target } : {}),
        ...(opts.scratchDir ? { scratchDir: opts.scratchDir } : {}),
        ...(opts.node ? { node: opts.node } : {}),
        ...(opts.excludeLsns ? { excludeLsns: opts.excludeLsns } : {}),
        ...(opts.acceptLoss ? { acceptLoss: true } : {}),
      };
      const parsed = parseInput(RestoreInputSchema, input);
      if (!parsed.ok) throw new InvalidInputError(parsed.problems);
      if (opts.preview) {
        // Planned by the workers: the node's own L1 catalog is readable only on its host.
        const dr = await KimiclawDr.connect(config());
        const preview = await dr.previewRestore(input);
        if (opts.json) printJson(preview);
        else {
          const decision = preview.cluster;
          if (decision && decision.kind === 'rebuild') {
            console.log(decision.why);
            if (decision.failoverFirst) console.log(`  failover    ${decision.target} → ${decision.source} first`);
            console.log(`  rebuild     ${decision.target} from a snapshot of ${decision.source}; its file moved aside`);
            console.log('  not restored: nothing (every acknowledged write is kept)');
          }
          const plan = preview.plan;
          if (decision && decision.kind === 'restore') console.log(decision.why);
          if (plan) {
            console.log(plan.reason);
            console.log(
              `  backup      ${plan.backup.backupId} (${plan.backup.tier}, ${formatBytes(plan.backup.artifact.bytes)} to download)`,
            );
            console.log(
              `  rows        ${plan.backup.snapshot.rows.toLocaleString('en-US')} in the backup, LSN ${plan.backup.snapshot.lsn}`,
            );
            console.log(
              `  log replay  ${plan.replaySegments} segment(s), LSN ${plan.replayFromLsn + 1} → ${plan.targetLsn}`,
            );
            for (const r of plan.excludedLsns ?? []) console.log(`  left out    LSN ${r.fromLsn}-${r.toLsn}`);
            if (plan.lost) {
              console.log(
                `  LOST        LSN ${plan.lost.fromLsn} → ${plan.lost.toLsn}: acknowledged, not in the archive (acceptLoss)`,
              );
            }
            if (plan.headLsn !== undefined && plan.headLsn > plan.targetLsn) {
              console.log(`  not restored: LSN ${plan.targetLsn + 1} → ${plan.headLsn} (after the target)`);
            }
            if (plan.needsRetrieval)
              console.log('  the artifact is in an archive storage class: it must be retrieved first (hours)');
            if (plan.fallbacks.length) console.log(`  fallbacks   ${plan.fallbacks.join(', ')}`);
          }
          console.log('nothing was changed (--preview)');
        }
        return;
      }
      const dr = await KimiclawDr.connect(config());
      const client = dr.client;
      const handle = await dr.startRestore(input);
      if (!opts.wait) {
        console.log(
          opts.json
            ? JSON.stringify({ workflowId: handle.workflowId })
            : `started restore workflow ${handle.workflowId}`,
        );
        return;
      }
      const result = await followWorkflow<RestoreResult>(client, handle.workflowId, !opts.json);
      if (opts.json) printJson(result);
      else {
        if (result.method === 'rebuild') {
          if (result.failedOver) {
            console.log(`failed over: ${result.failedOver.newPrimary} is primary at epoch ${result.failedOver.epoch}`);
          }
          console.log(
            `rebuilt ${result.database} on ${result.node} from ${result.rebuiltFrom}: nothing acknowledged lost`,
          );
        } else {
          console.log(`restored ${result.database} on ${result.node} from ${result.backupId} (${result.tier})`);
        }
        console.log(`  why         ${result.reason}`);
        for (const f of result.fellBackFrom) console.log(`  skipped ${f.backupId}: ${f.reason}`);
        if (result.verification) console.log(`  verified    ${describeVerification(result.verification)}`);
        if (result.method === 'backup') {
          console.log(
            `  log replay  ${result.segmentsReplayed} segment(s), ${result.rowsReplayed.toLocaleString('en-US')} rows`,
          );
        }
        for (const r of result.leftOut ?? []) {
          console.log(`  left out    LSN ${r.fromLsn}-${r.toLsn}: ${r.events} events (ids ${r.firstId}-${r.lastId})`);
        }
        if (result.lost) {
          console.log(`  LOST        LSN ${result.lost.fromLsn}-${result.lost.toLsn}: acknowledged, never archived`);
        }
        if (result.discarded) {
          console.log(
            `  discarded   LSN ${result.discarded.fromLsn}-${result.discarded.toLsn}, as asked (kept in the moved-aside file)`,
          );
        }
        if (result.epoch !== undefined)
          console.log(`  epoch       ${result.epoch} (a new history from LSN ${result.finalLsn})`);
        for (const f of result.followers ?? []) console.log(`  ${f.node.padEnd(11)} ${f.how}`);
        console.log(
          `  now         ${result.rows === undefined ? '' : `${result.rows.toLocaleString('en-US')} rows, `}LSN ${result.finalLsn}`,
        );
        if (result.movedAside) console.log(`  previous database kept at ${result.movedAside}`);
        if (result.path) console.log(`  restored to ${result.path}`);
        console.log(`  RTO         ${result.rtoSeconds.toFixed(1)} s`);
      }
    },
  );

const backups = program.command('backups').description('the backup catalog');

backups
  .command('list')
  .description('list backups, newest first')
  .addOption(tierOption())
  .option('--database <name>', 'only this database')
  .option('--json', 'print JSON')
  .action(async (opts: { tier?: Tier; database?: string; json?: boolean }) => {
    await withStores(async (cfg, stores) => {
      const catalog = await listCatalog(cfg, stores, { tier: opts.tier, database: opts.database });
      if (opts.json) printJson(catalog);
      else {
        console.log(formatBackupTable(catalog.backups));
        for (const p of catalog.problems) console.error(`warning: ${p}`);
      }
    });
  });

backups
  .command('verify [id]')
  .description(
    'download a backup, check its SHA-256, open it in DuckDB and compare with the manifest (default: newest of each tier)',
  )
  .option('--json', 'print JSON')
  .action(async (id: string | undefined, opts: { json?: boolean }) => {
    await withStores(async (cfg, stores) => {
      const targets = id ? [await findBackup(cfg, stores, id)] : await newestOfEachTier(cfg, stores);
      if (targets.length === 0) throw new InputProblem('id', 'the catalog is empty: there is nothing to verify');
      const reports: VerifyReport[] = [];
      for (const { manifest, store } of targets) {
        const report = await verifyStoredBackup(manifest, store);
        reports.push(report);
        if (!opts.json) {
          console.log(
            report.ok
              ? `OK     ${report.backupId}: SHA-256 matches, ${report.rows?.toLocaleString('en-US')} rows match the source fingerprint (${report.verification ? describeVerification(report.verification, manifest.artifact.compression) : 'not compared'}; ${report.seconds.toFixed(1)} s)`
              : `FAILED ${report.backupId} (${report.location}) failed verification:\n${report.problems.map((p) => `         - ${p}`).join('\n')}`,
          );
        }
      }
      if (opts.json) printJson(reports);
      if (reports.some((r) => !r.ok)) process.exitCode = 1;
    });
  });

async function newestOfEachTier(cfg: Config, stores: Stores) {
  const catalog = await listCatalog(cfg, stores);
  const seen = new Set<string>();
  const newest = catalog.backups.filter((b) => {
    const key = `${b.database}/${b.tier}`;
    if (seen.has(key) || b.bad) return false;
    seen.add(key);
    return true;
  });
  return Promise.all(newest.map((b) => findBackup(cfg, stores, b.backupId)));
}

backups
  .command('prune')
  .description("apply a tier's retention now, on the host of each catalog (workflow pruneBackups)")
  .addOption(tierOption().makeOptionMandatory())
  .option('--database <name>', 'database', 'kimiclaw')
  .option('--node <id>', "for L1: only this node's backups (default: every node's)")
  .option('--dry-run', 'show what would be deleted, delete nothing')
  .option('--json', 'print JSON: one result per catalog')
  .action(async (opts: { tier: Tier; database: string; node?: string; dryRun?: boolean; json?: boolean }) => {
    // A node's L1 directory is opened only by the worker on its host: the prune runs there.
    const dr = await KimiclawDr.connect(config());
    const results = await dr.prune({
      database: opts.database,
      tier: opts.tier,
      ...(opts.node ? { node: opts.node } : {}),
      dryRun: opts.dryRun ?? false,
    });
    if (opts.json) return printJson(results);
    for (const result of results) {
      const verb = result.dryRun ? 'would delete' : 'deleted';
      console.log(`${result.location}${result.node ? ` (node ${result.node})` : ''}`);
      console.log(`  ${verb}: ${result.deleted.map((d) => d.backupId).join(', ') || 'nothing'}`);
      for (const k of result.kept) console.log(`  kept ${k.backupId} (${k.reason})`);
      if (result.orphansDeleted.length) console.log(`  ${verb} orphans: ${result.orphansDeleted.join(', ')}`);
      for (const p of result.problems) console.error(`warning: ${p}`);
    }
  });

const schedules = program.command('schedules').description('Temporal schedules of the backups');

schedules
  .command('apply')
  .description('make the schedules match the config (create, update, delete); safe to repeat')
  .option('--json', 'print JSON')
  .action(async (opts: { json?: boolean }) => {
    const cfg = config();
    const client = await connectTemporal(cfg);
    const result = await applySchedules(client, cfg);
    if (opts.json) printJson(result);
    else {
      for (const [what, ids] of Object.entries(result)) if (ids.length) console.log(`${what}: ${ids.join(', ')}`);
    }
  });

schedules
  .command('list')
  .option('--json', 'print JSON')
  .action(async (opts: { json?: boolean }) => {
    const client = await connectTemporal(config());
    const infos = await describeSchedules(client);
    if (opts.json) printJson(infos);
    else {
      for (const s of infos) {
        console.log(`${s.scheduleId}  ${s.paused ? 'PAUSED ' : 'active '} ${s.spec}  next: ${s.nextRuns[0] ?? '-'}`);
      }
      if (infos.length === 0) console.log('no schedules; run `kimiclaw-dr schedules apply`');
    }
  });

for (const [verb, fn, text] of [
  ['pause', pauseSchedule, 'pause a schedule'],
  ['resume', resumeSchedule, 'resume a paused schedule'],
  ['trigger', triggerSchedule, 'run a schedule now'],
] as const) {
  schedules
    .command(`${verb} <scheduleId>`)
    .description(text)
    .action(async (id: string) => {
      const client = await connectTemporal(config());
      await fn(client, id);
      console.log(`${verb === 'trigger' ? 'triggered' : `${verb}d`} ${id}`);
    });
}

const archive = program.command('archive').description('the continuous log archive');

archive
  .command('start')
  .description("start a database's log archiver (one per database; a running one is left alone)")
  .option('--database <name>', 'database', 'kimiclaw')
  .action(async (opts: { database: string }) => {
    const dr = await KimiclawDr.connect(config());
    const handle = await dr.ensureLogArchive(opts.database);
    console.log(`log archiver ${handle.workflowId} is running`);
  });

archive
  .command('status')
  .description('how far each database is archived, and how far behind the primary')
  .option('--json', 'print JSON')
  .action(async (opts: { json?: boolean }) => {
    await withStores(async (cfg, stores) => {
      const { archiveStatus } = await import('../archive/status');
      const status = await archiveStatus(cfg, stores);
      if (opts.json) printJson(status);
      else {
        for (const s of status) {
          const archived =
            s.archivedThrough === undefined
              ? `archive unknown: ${s.archiveError}`
              : `${s.segments} segments, archived through LSN ${s.archivedThrough}`;
          const head =
            s.headLsn === undefined
              ? `primary unknown: ${s.headError}`
              : `primary at LSN ${s.headLsn}` +
                (s.archivedThrough === undefined ? '' : ` (${s.headLsn - s.archivedThrough} behind)`);
          console.log(`${s.database}: ${archived}; ${head}`);
        }
      }
      // An answer with a part missing is not a healthy status: scripts see it in the exit code.
      if (status.some((s) => s.archiveError || s.headError)) process.exitCode = 1;
    });
  });

const cluster = program.command('cluster').description('replication, failover and switchover of a multi-node database');

cluster
  .command('status')
  .description(
    'each node: role, epoch, LSN, replication lag; the primary and sync records and the topology lease of the config center',
  )
  .option('--cluster <name>', 'the database whose nodes form the cluster')
  .option('--json', 'print JSON')
  .action(async (opts: { cluster?: string; json?: boolean }) => {
    const cfg = config();
    const { createClusterActivities } = await import('../activities/cluster');
    const { DrMetrics } = await import('../metrics');
    const status = await createClusterActivities({
      config: cfg,
      stores: new Stores(cfg),
      metrics: new DrMetrics(),
    }).clusterStatus({ cluster: opts.cluster });
    if (opts.json) return printJson(status);
    const p = status.primary;
    console.log(`cluster ${status.cluster} — config center: ${status.configCenter}`);
    console.log(p ? `primary: ${p.node} (${p.url}), epoch ${p.epoch}, since ${p.since}` : 'primary: none recorded yet');
    if (status.sync) console.log(describeSync(status.sync));
    const lease = status.lease;
    if (lease) {
      const live = !lease.releasedAt && Date.parse(lease.expiresAt) > Date.now();
      console.log(
        live
          ? `topology lease: ${describeLease(lease)}`
          : `topology lease: free (last: ${lease.purpose} by ${lease.holder}, ${lease.releasedAt ? `released ${lease.releasedAt}` : `expired ${lease.expiresAt}`})`,
      );
    }
    for (const n of status.nodes) {
      if (!n.reachable) {
        console.log(`  ${n.id.padEnd(10)} unreachable (${n.error})  ${n.url}${n.zone ? `  zone ${n.zone}` : ''}`);
        continue;
      }
      const condition = n.status && n.status !== 'ok' ? `  ${n.status.toUpperCase()}` : '';
      const damage = n.damage ? ` (${n.damage.reason})` : '';
      console.log(
        `  ${n.id.padEnd(10)} ${String(n.role).padEnd(8)} epoch ${n.epoch}  LSN ${n.lsn}  ${n.url}${n.zone ? `  zone ${n.zone}` : ''}${condition}${damage}`,
      );
      for (const r of n.replicas ?? []) {
        console.log(
          `      → ${r.id} ${r.mode} ${r.state}, applied LSN ${r.appliedLsn ?? '?'}, lag ${r.lagLsn ?? '?'} batches, last ack ${r.lastAckMsAgo ?? '?'} ms ago`,
        );
      }
    }
  });

cluster
  .command('aside')
  .description(
    'the database files each node moved aside (a rebuild, a restore, a damaged file): kept until they expire, never deleted at once',
  )
  .option('--database <name>', 'the database whose nodes to ask', DEFAULT_DATABASE)
  .option('--json', 'print JSON')
  .action(async (opts: { database: string; json?: boolean }) => {
    const cfg = config();
    const db = new Stores(cfg).database(opts.database);
    const answers = await Promise.all(
      db.nodes.map(async (n) => {
        try {
          return { node: n.id, ...(await new NodeClient(n.id, n.url, cfg.nodeAuth.token).aside()) };
        } catch (err) {
          return { node: n.id, error: (err as Error).message };
        }
      }),
    );
    if (opts.json) return printJson(answers);
    for (const a of answers) {
      if ('error' in a) {
        console.log(`${a.node}: not answering (${a.error})`);
        continue;
      }
      const days = (a.retentionMs / 86_400_000).toFixed(1);
      console.log(`${a.node}: ${a.aside.length} file(s) moved aside in ${a.path}, kept ${days} days`);
      for (const f of a.aside) {
        console.log(
          `  ${f.name}  ${(f.bytes / 1024 / 1024).toFixed(1)} MiB  ${f.reason}, moved ${f.movedAt}, expires ${f.expiresAt}`,
        );
      }
    }
  });

cluster
  .command('failover')
  .description('fail over from the primary: fence, elect, promote, publish, notify (workflow failover-<cluster>)')
  .requiredOption('--node <id>', 'the failed primary')
  .option('--cluster <name>', 'the database whose nodes form the cluster')
  .option('--reason <text>', 'why')
  .option('--force', 'even if the node still answers, or no replica is proven to hold every acknowledged write')
  .option('--wait', 'wait for the result')
  .action(async (opts: { node: string; cluster?: string; reason?: string; force?: boolean; wait?: boolean }) => {
    const dr = await KimiclawDr.connect(config());
    const handle = await dr.startFailover({
      failedNode: opts.node,
      ...(opts.cluster ? { cluster: opts.cluster } : {}),
      ...(opts.reason ? { reason: opts.reason } : {}),
      ...(opts.force ? { force: true } : {}),
    });
    console.log(`failover started: ${handle.workflowId}`);
    if (opts.wait) printJson(await handle.result());
  });

cluster
  .command('switchover')
  .description('move the primary to an in-sync replica with no write lost (planned maintenance)')
  .option('--to <id>', 'the replica to promote (default: the most advanced in-sync one)')
  .option('--cluster <name>', 'the database whose nodes form the cluster')
  .option('--reason <text>', 'why')
  .option('--wait', 'wait for the result')
  .action(async (opts: { to?: string; cluster?: string; reason?: string; wait?: boolean }) => {
    const dr = await KimiclawDr.connect(config());
    const handle = await dr.startSwitchover({
      ...(opts.to ? { to: opts.to } : {}),
      ...(opts.cluster ? { cluster: opts.cluster } : {}),
      ...(opts.reason ? { reason: opts.reason } : {}),
    });
    console.log(`switchover started: ${handle.workflowId}`);
    if (opts.wait) printJson(await handle.result());
  });

const region = program
  .command('region')
  .description(
    'move the primary between regions (run against the Temporal of the region that takes it: DR_REGION, TEMPORAL_ADDRESS)',
  );

region
  .command('failover')
  .description("the primary region is lost: promote the standby region's replica (workflow region-failover-<cluster>)")
  .requiredOption('--to <region>', 'the standby region that takes over')
  .option('--confirm', 'required: this fences the region that holds the primary now')
  .option('--force', 'even though a node of the old region still answers')
  .option('--cluster <name>', 'the database whose nodes form the cluster')
  .option('--reason <text>', 'why')
  .option('--wait', 'wait for the result')
  .action(
    async (opts: {
      to: string;
      confirm?: boolean;
      force?: boolean;
      cluster?: string;
      reason?: string;
      wait?: boolean;
    }) => {
      const dr = await KimiclawDr.connect(config());
      const handle = await dr.startFailoverRegion({
        toRegion: opts.to,
        ...(opts.confirm ? { confirm: true } : {}),
        ...(opts.force ? { force: true } : {}),
        ...(opts.cluster ? { cluster: opts.cluster } : {}),
        ...(opts.reason ? { reason: opts.reason } : {}),
      } as Parameters<typeof dr.startFailoverRegion>[0]);
      console.log(`region failover started: ${handle.workflowId}`);
      if (opts.wait) printJson(await handle.result());
    },
  );

region
  .command('failback')
  .description('bring the home region back: its nodes rejoin, then a switchover moves the primary there, nothing lost')
  .requiredOption('--to <region>', 'the region the primary returns to')
  .option('--confirm', 'required')
  .option('--cluster <name>', 'the database whose nodes form the cluster')
  .option('--reason <text>', 'why')
  .option('--wait', 'wait for the result')
  .action(async (opts: { to: string; confirm?: boolean; cluster?: string; reason?: string; wait?: boolean }) => {
    const dr = await KimiclawDr.connect(config());
    const handle = await dr.startFailbackRegion({
      toRegion: opts.to,
      ...(opts.confirm ? { confirm: true } : {}),
      ...(opts.cluster ? { cluster: opts.cluster } : {}),
      ...(opts.reason ? { reason: opts.reason } : {}),
    } as Parameters<typeof dr.startFailbackRegion>[0]);
    console.log(`region failback started: ${handle.workflowId}`);
    if (opts.wait) printJson(await handle.result());
  });

cluster
  .command('monitor')
  .description('start monitorCluster (one per cluster; a running one is left alone)')
  .option('--cluster <name>', 'the database whose nodes form the cluster')
  .action(async (opts: { cluster?: string }) => {
    const dr = await KimiclawDr.connect(config());
    const handle = await dr.ensureMonitor(opts.cluster);
    console.log(`monitor ${handle.workflowId} is running`);
  });

const drills = program.command('drills').description('disaster drills: their stored reports and trend');

drills
  .command('run')
  .description('start a drill (one at a time per cluster); production needs --confirm')
  .addOption(
    new Option('--target <target>', 'where the faults go').choices(['isolated', 'production']).default('isolated'),
  )
  .option('--scenario <name...>', 'scenarios to run (default: all the target allows)')
  .option('--confirm', 'a production drill injects real faults into the cluster: say you mean it')
  .option('--reason <text>', 'why, for the report')
  .option('--wait', 'wait for the report and print it')
  .action(
    async (opts: {
      target: 'isolated' | 'production';
      scenario?: string[];
      confirm?: boolean;
      reason?: string;
      wait?: boolean;
    }) => {
      const dr = await KimiclawDr.connect(config());
      const handle = await dr.startDrill({
        target: opts.target,
        ...(opts.scenario ? { scenarios: opts.scenario as never } : {}),
        ...(opts.confirm ? { confirmed: true } : {}),
        ...(opts.reason ? { reason: opts.reason } : {}),
      });
      console.log(`drill started: workflow ${handle.workflowId}`);
      if (!opts.wait) return;
      const { formatReport } = await import('../drill/format');
      try {
        console.log(formatReport(await handle.result()));
      } catch (err) {
        const report = (err as { cause?: { details?: unknown[] } }).cause?.details?.[0];
        if (report) console.log(formatReport(report as Parameters<typeof formatReport>[0]));
        throw err;
      }
    },
  );

drills
  .command('confirm')
  .description('confirm the drill started without "confirmed" (from the UI) once it showed the cluster it checked')
  .action(async () => {
    const dr = await KimiclawDr.connect(config());
    const confirmed = await dr.confirmDrill();
    console.log(`drill ${confirmed.workflowId} confirmed; it checked: ${confirmed.steady}`);
  });

drills
  .command('list')
  .description('the stored drill reports, newest first')
  .option('--json', 'print JSON')
  .action(async (opts: { json?: boolean }) => {
    await withStores(async (_cfg, stores) => {
      const { listReports } = await import('../drill/report-store');
      const { formatReportList } = await import('../drill/format');
      const { reports, unreadable } = await listReports(stores.s3());
      if (opts.json) printJson({ reports, unreadable });
      else {
        console.log(formatReportList(reports));
        for (const u of unreadable) console.error(`warning: unreadable report ${u}`);
      }
    });
  });

drills
  .command('show <id>')
  .description('one drill: each scenario against its objectives, why it failed, its phases and healing')
  .option('--html <path>', 'also write the report page (rebuilt from the JSON) to this file')
  .option('--json', 'print the report JSON')
  .action(async (id: string, opts: { html?: string; json?: boolean }) => {
    await withStores(async (_cfg, stores) => {
      const { loadReport } = await import('../drill/report-store');
      const report = await loadReport(stores.s3(), id);
      if (!report)
        throw new InputProblem('id', `no drill report "${id}" is stored (kimiclaw-dr drills list shows them)`);
      if (opts.html) {
        const { writeFile } = await import('node:fs/promises');
        const { renderReportHtml } = await import('../drill/report-html');
        await writeFile(opts.html, renderReportHtml(report));
      }
      if (opts.json) printJson(report);
      else console.log((await import('../drill/format')).formatReport(report));
      if (opts.html) console.error(`report page written to ${opts.html}`);
    });
  });

drills
  .command('history')
  .description('per scenario over the stored drills: runs, pass rate, RTO median and worst, RPO worst')
  .option('--json', 'print JSON')
  .action(async (opts: { json?: boolean }) => {
    await withStores(async (_cfg, stores) => {
      const { listReports } = await import('../drill/report-store');
      const { trend } = await import('../drill/report');
      const found = trend((await listReports(stores.s3())).reports);
      if (opts.json) printJson(found);
      else console.log((await import('../drill/format')).formatTrend(found));
    });
  });

program
  .command('setup')
  .description('register the Dr* search attributes in the Temporal namespace (for an existing cluster)')
  .action(async () => {
    const cfg = config();
    const client = await connectTemporal(cfg);
    const { registerSearchAttributes } = await import('../search-attributes');
    const added = await registerSearchAttributes(client.connection, cfg.temporal.namespace);
    console.log(added.length ? `registered: ${added.join(', ')}` : 'all search attributes already registered');
  });

function explain(err: unknown): string {
  if (err instanceof ConfigError || err instanceof InvalidInputError || err instanceof InputProblem) return err.message;
  // A workflow's failure wraps its activity's, which wraps the reason (e.g. a drill refused in its
  // planning): every level down to it, each message once.
  const messages: string[] = [];
  for (let e: unknown = err; e instanceof Error && messages.length < 6; e = e.cause) {
    if (e.message && !messages.includes(e.message)) messages.push(e.message);
  }
  if (messages.length === 0) return String(err);
  return [messages[0], ...messages.slice(1).map((m) => `  cause: ${m}`)].join('\n');
}

program
  .parseAsync(process.argv)
  .then(() => {
    // Clients keep gRPC channels open; a finished command should not hang on them.
    if (program.args[0] !== 'start' && program.args[0] !== 'worker') setImmediate(() => process.exit());
  })
  .catch((err: unknown) => {
    console.error(`kimiclaw-dr: ${explain(err)}`);
    process.exit(1);
  });
