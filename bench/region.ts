/**
 * npm run bench:region [-- --rounds 4] [--mode replica|archive|both] [--lag-ms 0,500] [--logs DIR]
 *
 * Losses of the primary's whole region under a steady write load, on real processes on loopback,
 * in the topology of test/region.test.ts: nodes a1 (primary) and a2 (its synchronous standby) in
 * region a, b1 (an asynchronous replica) in region b, each renewing its leadership lease with the
 * etcd majority (TTL 3 s); etcd members a, b and c (c the witness); per region its own S3 server
 * (versitygw), its own Temporal dev server (region a's keeps its history in a file) and a worker
 * process (DR_REGION, DR_NODES of the region; region b's on region b's Temporal). Region a runs the
 * cluster (its schedules, its monitor), archives the log into its store (archiveLog, interval 1 s)
 * and copies that store to region b's (copyToRegion, every 1 s), during the whole bench: started
 * here, and restarted in region a by failbackRegion's takeOver after each round (each round waits
 * for both to run there again).
 *
 * Two kinds of rounds (--mode; both, the default, alternates them, a replica round first):
 *   replica: region b has its replica b1 with data, and failoverRegion promotes it;
 *   archive: region b's node has no data, and failoverRegion restores it from region b's store
 *            alone (the newest verified backup + the archived log copied there).
 * Each round, under a fresh writer that records every acknowledgement (when, by which node, at
 * which epoch, at which LSN):
 *
 *   1. waits for a steady cluster: the primary in region a, the other node of region a its
 *      synchronous standby in sync, b1 asynchronous and in sync; region a's archiver and copy
 *      running on its Temporal;
 *   2. replica rounds: with a lag (--lag-ms, a list the replica rounds take in turn, default
 *      0,500: every other one lags; 0: none), freezes b1 (SIGSTOP) that long before the fault, so
 *      region a acknowledges writes region b never received, and thaws it (SIGCONT) after the
 *      fault. Archive rounds: takes an L2 backup and waits until region b's store holds it
 *      (its manifest copied), then b1 loses its disk (SIGKILL, data directory removed) and region
 *      a goes on acknowledging alone (at least 200 batches and 5 s), so that what region b can
 *      recover is what the archive and the copy brought its store, not the backup;
 *   3. stops every process of region a at once: its nodes (SIGKILL), its etcd member (SIGKILL),
 *      its worker (SIGKILL), its S3 server and its Temporal server; archive rounds start b1 again,
 *      empty;
 *   4. starts failoverRegion ({ toRegion: 'b', confirm: true }) on region b's Temporal at once and
 *      waits for its result (method promoted in replica rounds, restored in archive rounds);
 *   5. measures the RTO (the fault → the first write acknowledged by the new primary, by the
 *      writer's clock), the operator's RTO (the workflow's start → that write), the workflow's
 *      rtoSeconds and phases (restore included), and the RPO: the acknowledged writes the new
 *      primary does not hold (stranded in region a: beyond the replica's lag, or acknowledged
 *      after the last log segment region b's store received), their count and age span (the
 *      fault − the oldest one's ack); each must lie beyond the new primary's LSN at the takeover
 *      (a lost tail, never a gap);
 *   6. brings region a back (nodes, etcd member, S3, Temporal on its port with its history, the
 *      worker), waits for region a's monitor to stand down, runs failbackRegion ({ toRegion: 'a' })
 *      on region a's Temporal (its writePauseMs measured), waits for region b's monitor to stand
 *      down, and checks the round's ledger on every node: nothing lost but the stranded writes
 *      (all acknowledged in region a; nothing b1 acknowledged), nothing duplicated or moved, no
 *      epoch acknowledged by two nodes, and every stranded write kept aside in the former
 *      primary's data directory (<db>.aside.<time>.diverged-tail).
 *
 * Prints per mode (replica rounds per lag) p50/p99 of each measure, with the targets beside them:
 * region RTO ≤ 60 s from the operator's start in both; RPO ≤ 1 s with a replica; RPO age ≤ 15 s
 * from the copied archive alone. Exits 1 when an acknowledged write other than the stranded ones
 * was lost (or held twice, or at another place, or two nodes acknowledged in one epoch), a stranded
 * write lies at or below the new primary's LSN (or, in an archive round, at or below the LSN of the
 * backup region b's store held), or a stranded write is not kept aside (or is held as an event
 * again). Process output goes to <temp>/logs (removed at the end; the nodes' and workers' last
 * lines are printed when the bench fails), or to --logs (kept, with region a's Temporal history).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { constants, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { primaryKey, syncKey, type SyncRecord } from '../src/activities/cluster';
import { archiveWorkflowId, manifestKey } from '../src/backup/ids';
import { KimiclawDr } from '../src/client';
import { parseConfig, type ConfigInput } from '../src/config';
import { type ConfigCenter, openConfigCenter, readPrimary } from '../src/config-center';
import { type ClusterWriter, ledgerEventsOn, sequencesKeptAside, startClusterWriter } from '../src/dev/cluster-writer';
import { type EtcdCluster, startEtcdCluster } from '../src/dev/etcd';
import { NodeProcess, initialClusterArgs } from '../src/dev/node-process';
import {
  type TemporalDevServer,
  type Versitygw,
  createBucket,
  startTemporalDevServer,
  startVersitygw,
} from '../src/dev/servers';
import { newNodeToken } from '../src/dev/token-file';
import { FAILOVER_TASK_TIMEOUT, monitorWorkflowId } from '../src/failover/input';
import { regionFailbackWorkflowId, regionFailoverWorkflowId } from '../src/failover/region-input';
import { freePort } from '../src/net';
import { NodeToken } from '../src/node-token';
import { startWebhookReceiver, type WebhookReceiver } from '../src/notify/receiver';
import { regionCopyWorkflowId } from '../src/region/copy-plan';
import { applySchedules } from '../src/schedules';
import { S3Store, createS3Client } from '../src/storage/s3';
import type { FailbackRegionResult, FailoverRegionResult, RegionPhases } from '../src/workflows/region-failover';
import { checkEvents } from '../test/ledger';
import { log } from './env';
import { percentile, sleep, until, within } from './poll';

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '4' },
    mode: { type: 'string', default: 'both' },
    'lag-ms': { type: 'string', default: '0,500' },
    logs: { type: 'string' },
  },
});
const REPO = resolve(__dirname, '..');
const CLUSTER = 'kimiclaw';
const KEY = primaryKey(CLUSTER);
const REGION_OF: Record<string, string> = { a1: 'a', a2: 'a', b1: 'b' };
/** The region the cluster runs in (regions.primary), lost every round, and the one that takes over. */
const HOME = 'a';
const STANDBY = 'b';
/** etcd members, one per region; c holds no node (the witness). */
const ETCD_MEMBERS = ['a', 'b', 'c'];
const LEASE_TTL = '3s';
const PHASES = [
  'check',
  'fence',
  'lease',
  'elect',
  'config',
  'promote',
  'restore',
  'notify',
  'takeOver',
] as const satisfies ReadonlyArray<keyof RegionPhases>;
/** As bench:zones: the monitor probes every 250 ms. */
const PROBE_INTERVAL = '250ms';
/** Acknowledged batches waited for before the fault, after the first on the new primary, and after the failback. */
const ACKS_BETWEEN = 50;
/** replica: region b's replica b1 is promoted; archive: b1 has no data and is restored from region b's store. */
type Mode = 'replica' | 'archive';
/** The rounds' modes per --mode, taken in turn. */
const MODES: Record<string, Mode[]> = { replica: ['replica'], archive: ['archive'], both: ['replica', 'archive'] };
/**
 * The issue's targets: a region lost, RTO ≤ 60 s from the operator's start; RPO ≤ 1 s with a
 * replica, ≤ 15 s (the age of the oldest write lost) from the copied archive alone.
 */
const TARGET_RTO_S = 60;
const TARGET_RPO_S: Record<Mode, number> = { replica: 1, archive: 15 };
/** Region a's log archive (into its store) and the copy of its store to region b's: as test/region.test.ts. */
const ARCHIVE_INTERVAL = '1s';
const COPY_INTERVAL = '1s';
/**
 * Archive rounds: what region a acknowledges alone after b1 lost its disk (batches, and at least
 * this long), so that the RPO is the archive interval + the copy lag, not the backup's age.
 */
const ALONE_ACKS = 200;
const ALONE_MS = 5_000;
const CREDS: Record<string, { accessKey: string; secretKey: string }> = {
  a: { accessKey: 'bench-region-a', secretKey: 'bench-region-a-secret' },
  b: { accessKey: 'bench-region-b', secretKey: 'bench-region-b-secret' },
};
const BUCKET: Record<string, string> = { a: 'kimiclaw-backups-a', b: 'kimiclaw-backups-b' };

/** The fields of GET /health this bench reads. */
interface Health {
  role: string;
  epoch: number;
  lsn: number;
  ackedLsn: number;
  replicas?: Array<{ id: string; mode?: string; state: string }>;
}

async function health(url: string): Promise<Health> {
  const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1_000) });
  return (await res.json()) as Health;
}

/** What one round measured and found. */
interface Round {
  mode: Mode;
  /** replica rounds: how long b1 was frozen before the fault (0 in archive rounds). */
  lagMs: number;
  /** archive rounds: the L2 backup taken before b1 lost its disk, and what region a did alone then. */
  archive?: {
    backupId: string;
    backupLsn: number;
    /** Seconds: the backup started → its manifest in region b's store. */
    backupSeconds: number;
    /** Seconds: b1 lost its disk → the fault, and the batches region a acknowledged meanwhile. */
    aloneSeconds: number;
    aloneAcks: number;
  };
  /** The primary lost with region a, and the node that took over. */
  from: string;
  result: FailoverRegionResult;
  failback: FailbackRegionResult;
  /** Seconds: the fault → the first write acknowledged by the new primary. */
  rto: number;
  /** Seconds: failoverRegion started → the first write acknowledged by the new primary. */
  operatorRto: number;
  /** Seconds: region a's processes started again → all up (its worker polling). */
  restart: number;
  /** Seconds: region a's worker polling → its monitor stood down. */
  standDown: number;
  /** Seconds: failbackRegion started → its result. */
  failbackSeconds: number;
  /** Acknowledged writes (events) of the round. */
  acked: number;
  /** Acknowledgement times of the stranded writes (acknowledged in region a, never in region b). */
  stranded: number[];
  /** Seconds: the fault − the oldest stranded write's acknowledgement (0 when none). */
  rpoSeconds: number;
  /** Stranded writes at or below the new primary's LSN at the takeover (a gap, not a lost tail). */
  belowLsn: number;
  /**
   * archive rounds: stranded writes at or below the LSN of the backup region b's store held
   * before the fault: lost although region b had them (a new primary behind its own store).
   */
  inStore: number;
  /** Region a's archiver or copy found not running before the round (then started by the bench). */
  notArchiving: string[];
  /** Stranded writes not found in the former primary's kept-aside files. */
  notKept: number;
  /** Stranded writes some node holds as events again after the failback. */
  resurrected: number;
  /** Acknowledged writes (other than stranded) that a node does not hold. */
  lost: number;
  duplicated: number;
  changed: number;
  /** Epochs in which two nodes acknowledged writes. */
  splitEpochs: number;
}

async function main(): Promise<void> {
  const rounds = Number(args.rounds);
  if (!Number.isInteger(rounds) || rounds < 1)
    throw new Error(`--rounds must be a positive integer, not ${args.rounds}`);
  const lags = args['lag-ms'].split(',').map((s) => Number(s.trim()));
  if (lags.length === 0 || lags.some((l) => !Number.isInteger(l) || l < 0))
    throw new Error(`--lag-ms must be milliseconds (a list, e.g. 0,500), not ${args['lag-ms']}`);
  const cycle = MODES[args.mode];
  if (!cycle) throw new Error(`--mode must be replica, archive or both, not ${args.mode}`);
  const root = await mkdtemp(join(tmpdir(), 'kimiclaw-bench-region-'));
  const logDir = args.logs ? resolve(args.logs) : join(root, 'logs');
  await mkdir(logDir, { recursive: true });
  const benchStart = Date.now();

  const nodes: NodeProcess[] = [];
  const workers = new Map<string, ChildProcess>();
  const temporal = new Map<string, TemporalDevServer>();
  const s3 = new Map<string, Versitygw>();
  const clients = new Map<string, Client>();
  let etcd: EtcdCluster | undefined;
  let hooks: WebhookReceiver | undefined;
  let center: ConfigCenter | undefined;
  let writer: ClusterWriter | undefined;
  let storeB: S3Store | undefined;

  let cleaning: Promise<void> | undefined;
  const cleanup = () =>
    (cleaning ??= (async () => {
      await writer?.stop().catch(() => undefined);
      // A frozen replica first: a stopped process does not die of SIGTERM.
      for (const n of nodes) n.signal('SIGCONT');
      await center?.close().catch(() => undefined);
      storeB?.client.destroy();
      await Promise.all([...clients.values()].map((c) => c.connection.close().catch(() => undefined)));
      await Promise.all([...workers.values()].map((w) => stopChild(w, 'SIGKILL')));
      await Promise.all(nodes.map((n) => n.stop('SIGKILL')));
      await Promise.all(
        [...[...temporal.values(), ...s3.values()].map((s) => s.stop()), etcd?.stop(), hooks?.close()].map((p) =>
          p?.catch(() => undefined),
        ),
      );
      // With --logs, region a's Temporal history is kept beside the logs (a dev server started on it shows it).
      if (args.logs)
        await cp(join(root, 'temporal-a'), join(logDir, 'temporal-a'), { recursive: true }).catch(() => undefined);
      await rm(root, { recursive: true, force: true });
    })());
  // Interrupted: the same cleanup, then exit as the signal would have. The handler stays: while
  // it is there, src/dev/servers.ts leaves the exit to it instead of dying at once.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      if (cleaning) return;
      log(`${signal}: stopping every process of the bench`);
      void cleanup().finally(() => process.exit(128 + constants.signals[signal]));
    });
  }

  try {
    const temporalDb = join(root, 'temporal-a', 'history.db');
    const startTemporal = async (region: string, port?: number) => {
      const server = await startTemporalDevServer({
        uiPort: false,
        logFile: join(logDir, `temporal-${region}.log`),
        ...(region === HOME ? { dbFile: temporalDb } : {}),
        ...(port ? { port } : {}),
      });
      temporal.set(region, server);
      const old = clients.get(region);
      clients.set(region, new Client({ connection: await Connection.connect({ address: server.address }) }));
      await old?.connection.close().catch(() => undefined);
    };
    const startS3 = async (region: string) => {
      const server = await startVersitygw({
        dir: join(root, `s3-${region}`),
        logFile: join(logDir, `versitygw-${region}.log`),
        ...CREDS[region]!,
      });
      s3.set(region, server);
      await createBucket(server.endpoint, CREDS[region]!, BUCKET[region]!);
    };
    [etcd, hooks] = await Promise.all([
      startEtcdCluster({ names: ETCD_MEMBERS, root: join(root, 'etcd') }),
      startWebhookReceiver({ secret: 'bench' }),
      startTemporal(HOME),
      startTemporal(STANDBY),
      startS3(HOME),
      startS3(STANDBY),
    ]);
    // Fresh tokens per run, handed to the nodes as the environment, never argv; the workers read
    // the control token from a file the config names.
    const control = newNodeToken();
    const eventsToken = newNodeToken();
    const events = new NodeToken(eventsToken);
    const tokenFile = join(root, 'node-token');
    await writeFile(tokenFile, `${control}\n`, { mode: 0o600 });
    const ids = Object.keys(REGION_OF);
    const ports: number[] = [];
    while (ports.length < ids.length) {
      const port = await freePort();
      if (!ports.includes(port)) ports.push(port);
    }
    for (const [i, id] of ids.entries()) {
      const node = new NodeProcess(id, join(root, 'nodes'), CLUSTER, ports[i]);
      node.env = { KIMICLAW_NODE_TOKENS: control, KIMICLAW_EVENTS_TOKENS: eventsToken };
      node.logFile = join(logDir, `${id}.log`);
      node.createIfMissing = true;
      // As test/harness.ts starts a cluster: a1 primary, a2 synchronous, b1 asynchronous.
      node.args = initialClusterArgs(ids, ports, i);
      // The production shape: each node renews its leadership lease with the etcd majority.
      node.args.push('--leader-etcd', etcd.endpoints.join(','), '--leader-ttl', LEASE_TTL);
      nodes.push(node);
    }
    // Replicas first, so the primary finds them listening.
    for (const node of [...nodes.slice(1), nodes[0]!]) await node.start();

    const s3a = s3.get(HOME)!;
    const s3b = s3.get(STANDBY)!;
    const raw: ConfigInput = {
      temporal: { address: temporal.get(HOME)!.address, taskQueue: 'bench-region' },
      storage: {
        endpoint: s3a.endpoint,
        bucket: BUCKET[HOME]!,
        accessKeyId: CREDS[HOME]!.accessKey,
        secretAccessKey: CREDS[HOME]!.secretKey,
      },
      databases: [
        {
          name: CLUSTER,
          nodes: nodes.map((n) => ({ id: n.id, url: n.url, dataDir: n.dataDir, region: REGION_OF[n.id] })),
        },
      ],
      regions: {
        primary: HOME,
        standby: [
          {
            name: STANDBY,
            storage: {
              endpoint: s3b.endpoint,
              bucket: BUCKET[STANDBY]!,
              accessKeyId: CREDS[STANDBY]!.accessKey,
              secretAccessKey: CREDS[STANDBY]!.secretKey,
            },
            copyInterval: COPY_INTERVAL,
          },
        ],
      },
      archive: { interval: ARCHIVE_INTERVAL },
      metrics: { port: 0 },
      nodeAuth: { tokenFile },
      cluster: {
        configCenter: {
          kind: 'etcd',
          endpoints: etcd.members.map((m) => ({ url: m.endpoint, zone: m.name })),
          timeoutMs: 1_000,
        },
        probeInterval: PROBE_INTERVAL,
        webhooks: [{ url: hooks.url, secret: 'bench' }],
      },
    };
    const config = parseConfig(raw, 'bench region');
    const configFile = join(root, 'kimiclaw-dr.json');
    await writeFile(configFile, JSON.stringify(raw, null, 2));
    const cc = openConfigCenter(config.cluster.configCenter);
    center = cc;
    const client = (region: string) => clients.get(region)!;
    const standbyStorage = config.regions!.standby[0]!.storage;
    const store = new S3Store(createS3Client(standbyStorage), standbyStorage);
    storeB = store;

    const nodesOf = (region: string) => nodes.filter((n) => REGION_OF[n.id] === region);
    const node = (id: string) => nodes.find((n) => n.id === id)!;
    const member = (name: string) => etcd!.members.find((m) => m.name === name)!;
    const startRegionWorker = async (region: string) => {
      const env: NodeJS.ProcessEnv = {
        DR_REGION: region,
        DR_NODES: nodesOf(region)
          .map((n) => n.id)
          .join(','),
      };
      if (region !== HOME) env.TEMPORAL_ADDRESS = temporal.get(region)!.address;
      workers.set(region, await spawnWorker(configFile, env, join(logDir, `worker-${region}.log`)));
    };
    const syncRecord = async () => (await cc.get(syncKey(CLUSTER))).value as SyncRecord | undefined;
    /** Region a archives the log into its store and copies that store to region b's (as failbackRegion's takeOver does). */
    const startHomeArchiving = async () => {
      await new KimiclawDr(client(HOME), config).ensureLogArchive(CLUSTER);
      await client(HOME).workflow.start('copyToRegion', {
        taskQueue: config.temporal.taskQueue,
        workflowId: regionCopyWorkflowId(STANDBY),
        args: [{ region: STANDBY }],
        workflowIdConflictPolicy: 'USE_EXISTING',
      });
    };
    /**
     * Waits until region a's archiver and copy run on its Temporal (after a failback, its
     * takeOver restarted them); answers what was found otherwise, after starting them itself so
     * that the bench goes on (the round reports it).
     */
    const homeArchiving = async (): Promise<string[]> => {
      const ids = [archiveWorkflowId(CLUSTER), regionCopyWorkflowId(STANDBY)];
      const status = async (id: string) => (await client(HOME).workflow.getHandle(id).describe()).status.name;
      try {
        await until(
          `region ${HOME}'s archiveLog and copyToRegion running on its Temporal`,
          async () => (await Promise.all(ids.map(status))).every((s) => s === 'RUNNING'),
          60_000,
          250,
        );
        return [];
      } catch {
        const found = await Promise.all(ids.map((id) => status(id).catch((err: unknown) => String(err))));
        await startHomeArchiving();
        return ids.map((id, i) => `${id}: ${found[i]}`).filter((_, i) => found[i] !== 'RUNNING');
      }
    };
    const monitorResult = (region: string, ms: number) =>
      within(
        `region ${region}'s monitor to stand down`,
        ms,
        client(region).workflow.getHandle(monitorWorkflowId(CLUSTER)).result() as Promise<{ stoodDown?: string }>,
      );

    /**
     * The recorded primary is in region a and answers as such at its epoch; the other node of
     * region a is its synchronous standby in sync (the sync record of that epoch names it alone,
     * not degraded, no move under way), the node of region b an asynchronous replica in sync.
     */
    const steady = () =>
      until(
        `a steady cluster: the primary in region ${HOME}, its standby in region ${HOME}, region ${STANDBY} in sync`,
        async () => {
          const record = (await readPrimary(cc, KEY)).record;
          if (!record || REGION_OF[record.node] !== HOME) return false;
          const primary = node(record.node);
          const partner = nodesOf(HOME).find((n) => n.id !== primary.id)!;
          const remote = nodesOf(STANDBY)[0]!;
          const [p, s] = await Promise.all([health(primary.url), syncRecord()]);
          const link = (id: string) => p.replicas?.find((r) => r.id === id);
          const ok =
            p.role === 'primary' &&
            p.epoch === record.epoch &&
            link(partner.id)?.mode === 'sync' &&
            link(partner.id)?.state === 'in-sync' &&
            link(remote.id)?.mode === 'async' &&
            link(remote.id)?.state === 'in-sync' &&
            s?.epoch === record.epoch &&
            !s.degraded &&
            !s.switching &&
            s.standbys.join() === partner.id;
          return ok ? { primary, epoch: record.epoch, standby: partner.id } : false;
        },
        180_000,
        200,
      );

    // Region a runs the cluster: its schedules and its monitor, on its Temporal.
    await Promise.all([startRegionWorker(HOME), startRegionWorker(STANDBY)]);
    await applySchedules(client(HOME), config);
    await new KimiclawDr(client(HOME), config).ensureMonitor(CLUSTER);
    await startHomeArchiving();
    await steady();
    const modeOf = (round: number) => cycle[(round - 1) % cycle.length]!;
    log(
      `${nodes.map((n) => `${n.id} (region ${REGION_OF[n.id]})`).join(', ')}; leadership lease TTL ${LEASE_TTL}; ` +
        `etcd members ${ETCD_MEMBERS.join(', ')}; per region an S3 server, a Temporal server and a worker; ` +
        `monitor probing every ${PROBE_INTERVAL}, workflow task timeout ${FAILOVER_TASK_TIMEOUT}; ` +
        `region ${HOME} archives every ${ARCHIVE_INTERVAL} and copies its store to region ${STANDBY}'s every ${COPY_INTERVAL}; ` +
        `rounds: ${Array.from({ length: rounds }, (_, i) => modeOf(i + 1)).join(', ')}` +
        (cycle.includes('replica')
          ? `; lag of region ${STANDBY}'s replica per replica round: ${lags.join(', ')} ms`
          : ''),
    );

    const done: Round[] = [];
    let replicaRounds = 0;
    for (let round = 1; round <= rounds; round++) {
      const mode = modeOf(round);
      const lagMs = mode === 'replica' ? lags[replicaRounds++ % lags.length]! : 0;
      const start = await steady();
      const from = start.primary;
      // Region a archives and copies to region b during the whole bench (restarted by failbackRegion).
      const notArchiving = await homeArchiving();
      // The round's ledger lies beyond every node's head now (no writes since the last check).
      const fromLsn = Math.min(...(await Promise.all(nodes.map(async (n) => (await health(n.url)).lsn))));
      const w = startClusterWriter(cc, { token: events, key: KEY, requestTimeoutMs: 2_000 });
      writer = w;
      await until('writes flowing', async () => w.acks.length >= ACKS_BETWEEN);

      // Region b's replica falls behind: frozen for a moment (the lag a slow link between regions
      // makes), so region a holds acknowledged writes region b never received when it is lost.
      const remote = nodesOf(STANDBY)[0]!;
      if (lagMs > 0) {
        remote.signal('SIGSTOP');
        await sleep(lagMs);
      }
      // Or region b has no replica with data: a backup is in its store, then b1 loses its disk and
      // region a goes on alone, so that region b holds only what the archive and the copy bring it.
      let archive: Round['archive'];
      if (mode === 'archive') {
        const backupAt = Date.now();
        const backing = await new KimiclawDr(client(HOME), config).startBackup({
          database: CLUSTER,
          tier: 'L2',
          reason: `bench:region round ${round}: region ${STANDBY} restores from its store`,
        });
        const backup = await within('the L2 backup', 300_000, backing.result());
        const manifest = manifestKey(CLUSTER, 'L2', backup.backupId);
        await until(
          `backup ${backup.backupId} in region ${STANDBY}'s store`,
          async () => (await store.list(manifest)).some((o) => o.key === manifest),
          120_000,
          250,
        );
        const backupSeconds = (Date.now() - backupAt) / 1000;
        await remote.stop('SIGKILL');
        await rm(remote.dataDir, { recursive: true, force: true });
        const aloneAt = Date.now();
        const acksAlone = w.acks.length;
        await until(
          `writes acknowledged in region ${HOME} alone`,
          async () => w.acks.length >= acksAlone + ALONE_ACKS && Date.now() - aloneAt >= ALONE_MS,
          120_000,
          50,
        );
        archive = {
          backupId: backup.backupId,
          backupLsn: backup.lsn,
          backupSeconds,
          aloneSeconds: (Date.now() - aloneAt) / 1000,
          aloneAcks: w.acks.length - acksAlone,
        };
      }

      // Every process of region a at once. The failover starts once its nodes are gone (they must
      // not answer, or it is refused); the S3 and Temporal servers stop meanwhile.
      const faultAt = Date.now();
      const serversDown = Promise.all([s3.get(HOME)!.stop(), temporal.get(HOME)!.stop()]);
      await Promise.all([
        ...nodesOf(HOME).map((n) => n.stop('SIGKILL')),
        member(HOME).kill(),
        stopChild(workers.get(HOME)!, 'SIGKILL'),
      ]);
      if (lagMs > 0) remote.signal('SIGCONT');
      // Region b's node, empty, answers again for failoverRegion to restore it.
      if (mode === 'archive') await remote.start();

      const operatorAt = Date.now();
      const handle = await client(STANDBY).workflow.start('failoverRegion', {
        taskQueue: config.temporal.taskQueue,
        workflowId: regionFailoverWorkflowId(CLUSTER),
        args: [{ toRegion: STANDBY, reason: `region ${HOME} lost (bench round ${round})`, confirm: true }],
      });
      const result = (await within('the failoverRegion result', 180_000, handle.result())) as FailoverRegionResult;
      await serversDown;
      const first = await until(`a write acknowledged by ${result.newPrimary}`, async () =>
        w.acks.find((a) => a.at > faultAt && a.node === result.newPrimary),
      );
      const acksAfter = w.acks.length;
      await until('more writes on the new primary', async () => w.acks.length >= acksAfter + ACKS_BETWEEN);

      // What region a acknowledged that the new primary never received: stranded in region a.
      // Only a lost tail: a stranded write at or below the new primary's LSN at the takeover is
      // a gap in its history. (What b1 acknowledged is never counted here: all of it must be held.)
      // Region a is still down: every acknowledgement of its nodes so far came before they died.
      const onNew = new Set((await ledgerEventsOn(node(result.newPrimary).url, events, fromLsn)).map((e) => e.seq));
      const strandedAt = new Map<number, number>();
      let belowLsn = 0;
      let inStore = 0;
      for (const a of w.acks) {
        if (REGION_OF[a.node] !== HOME) continue;
        for (const seq of a.seqs) {
          if (onNew.has(seq)) continue;
          strandedAt.set(seq, a.at);
          if (a.lsn <= result.lsn) belowLsn++;
          if (archive && a.lsn <= archive.backupLsn) inStore++;
        }
      }

      // Region a returns: its monitor stands down (the primary is in region b now).
      const backAt = Date.now();
      const temporalPort = Number(temporal.get(HOME)!.address.split(':').pop());
      // How long each part took to come up (seconds), for the round's line.
      const upIn: Record<string, number> = {};
      const timed = async (what: string, p: Promise<unknown>) => {
        await p;
        upIn[what] = (Date.now() - backAt) / 1000;
      };
      await Promise.all([
        ...nodesOf(HOME).map((n) => timed(n.id, n.start())),
        timed('etcd', member(HOME).restart()),
        timed('S3', s3.get(HOME)!.start()),
        timed('Temporal', startTemporal(HOME, temporalPort)),
      ]);
      const workerAt = Date.now();
      await startRegionWorker(HOME);
      upIn['then the worker'] = (Date.now() - workerAt) / 1000;
      const upAt = Date.now();
      const stood = await monitorResult(HOME, 180_000);
      const restart = (upAt - backAt) / 1000;
      const standDown = (Date.now() - upAt) / 1000;

      // The primary goes home: failbackRegion on region a's Temporal.
      const failbackAt = Date.now();
      const fb = await client(HOME).workflow.start('failbackRegion', {
        taskQueue: config.temporal.taskQueue,
        workflowId: regionFailbackWorkflowId(CLUSTER),
        args: [{ toRegion: HOME, confirm: true, reason: `region ${HOME} is back (bench round ${round})` }],
      });
      const failback = (await within('the failbackRegion result', 300_000, fb.result())) as FailbackRegionResult;
      const failbackSeconds = (Date.now() - failbackAt) / 1000;
      const acksBack = w.acks.length;
      await until(`writes in region ${HOME} again`, async () => w.acks.length >= acksBack + ACKS_BETWEEN);
      const stoodB = await monitorResult(STANDBY, 120_000);
      await w.stop();
      writer = undefined;

      // Every node at the primary's acknowledged head, then the round's ledger on each of them.
      const after = await steady();
      const head = (await health(after.primary.url)).ackedLsn;
      await until(
        `every node at LSN ${head}`,
        async () =>
          (await Promise.all(nodes.map((n) => health(n.url)))).every((h) => h.lsn >= head && h.ackedLsn >= head),
        120_000,
        200,
      );
      const ackedAt = new Map<number, number>();
      for (const a of w.acks) for (const seq of a.seqs) ackedAt.set(seq, a.at);
      const lost = new Set<number>();
      const duplicated = new Set<number>();
      const changed = new Set<number>();
      const resurrected = new Set<number>();
      // Where each lost or moved write is missing or found otherwise, to say so.
      const wrongOn = new Map<number, string[]>();
      const wrong = (seq: number, what: string) => wrongOn.set(seq, [...(wrongOn.get(seq) ?? []), what]);
      for (const n of nodes) {
        const held = await ledgerEventsOn(n.url, events, fromLsn);
        const check = checkEvents(w, held, { ignore: (seq) => strandedAt.has(seq) });
        check.lost.forEach((s) => {
          lost.add(s);
          wrong(s, `missing on ${n.id}`);
        });
        check.duplicated.filter((s) => ackedAt.has(s)).forEach((s) => duplicated.add(s));
        check.changed.forEach((c) => {
          changed.add(c.seq);
          wrong(c.seq, `on ${n.id} at ${c.found} (id@LSN)`);
        });
        for (const e of held) if (strandedAt.has(e.seq)) resurrected.add(e.seq);
      }
      // The batches of the writes lost or moved: who acknowledged them, when, where.
      const wrongBatches = w.acks
        .filter((a) => a.seqs.some((seq) => wrongOn.has(seq)))
        .slice(0, 5)
        .map(
          (a) =>
            `batch ${a.seqs[0]}…${a.seqs.at(-1)} acknowledged by ${a.node} at epoch ${a.epoch}, ${a.firstId}@${a.lsn}, ` +
            `${((a.at - faultAt) / 1000).toFixed(2)} s after the fault: ` +
            [...new Set(a.seqs.flatMap((seq) => wrongOn.get(seq) ?? []))].join(', '),
        );
      const ackers = new Map<number, Set<string>>();
      for (const a of w.acks) ackers.set(a.epoch, (ackers.get(a.epoch) ?? new Set()).add(a.node));
      // The stranded writes, kept aside by the former primary when it rejoined.
      const kept = await sequencesKeptAside(from.dataDir);
      const notKept = [...strandedAt.keys()].filter((seq) => !kept.has(seq));

      const stranded = [...strandedAt.values()];
      const r: Round = {
        mode,
        lagMs,
        ...(archive ? { archive } : {}),
        from: from.id,
        result,
        failback,
        rto: (first.at - faultAt) / 1000,
        operatorRto: (first.at - operatorAt) / 1000,
        restart,
        standDown,
        failbackSeconds,
        acked: ackedAt.size,
        stranded,
        rpoSeconds: stranded.length ? (faultAt - Math.min(...stranded)) / 1000 : 0,
        belowLsn,
        inStore,
        notArchiving,
        notKept: notKept.length,
        resurrected: resurrected.size,
        lost: lost.size,
        duplicated: duplicated.size,
        changed: changed.size,
        splitEpochs: [...ackers.values()].filter((s) => s.size > 1).length,
      };
      done.push(r);
      const expected = mode === 'archive' ? 'restored' : 'promoted';
      const notes = [
        notArchiving.length
          ? `region ${HOME}'s archiver or copy was not running (started by the bench): ${notArchiving.join('; ')}`
          : '',
        result.method !== expected
          ? `failoverRegion ${result.method} ${result.newPrimary} (expected: ${expected})`
          : '',
        result.oldPrimary !== from.id ? `the failover was of ${result.oldPrimary}` : '',
        stood.stoodDown ? '' : `region ${HOME}'s monitor ended without standing down: ${JSON.stringify(stood)}`,
        stoodB.stoodDown ? '' : `region ${STANDBY}'s monitor ended without standing down: ${JSON.stringify(stoodB)}`,
        r.lost ? `LOST ${r.lost}` : '',
        wrongBatches.length ? `(${wrongBatches.join('; ')})` : '',
        r.duplicated ? `DUPLICATED ${r.duplicated}` : '',
        r.changed ? `CHANGED ${r.changed}` : '',
        r.splitEpochs ? `EPOCHS ACKNOWLEDGED BY TWO NODES ${r.splitEpochs}` : '',
        r.notKept ? `STRANDED NOT KEPT ASIDE ${r.notKept} (aside on ${from.id}: ${kept.size} events)` : '',
        r.resurrected ? `STRANDED HELD AGAIN ${r.resurrected}` : '',
        r.belowLsn ? `STRANDED AT OR BELOW THE NEW PRIMARY'S LSN ${result.lsn}: ${r.belowLsn}` : '',
        r.inStore
          ? `LOST THOUGH REGION ${STANDBY}'S STORE HELD THEM (at or below the backup's LSN ${archive!.backupLsn}): ${r.inStore}`
          : '',
      ].filter(Boolean);
      const how =
        mode === 'replica'
          ? `replica, lag ${lagMs} ms`
          : `archive: L2 backup ${archive!.backupId} at LSN ${archive!.backupLsn} in region ${STANDBY}'s store ` +
            `${archive!.backupSeconds.toFixed(1)} s after it started, then b1 emptied and region ${HOME} alone ` +
            `${archive!.aloneSeconds.toFixed(1)} s (${archive!.aloneAcks} batches)`;
      const restoredHow = result.restored
        ? `; ${result.newPrimary} restored to LSN ${result.restored.finalLsn}, ` +
          `${result.restored.segmentsReplayed} segments replayed (${result.restored.reason})`
        : '';
      log(
        `  round ${round} (${how}): region ${HOME} lost; ${from.id} (epoch ${start.epoch}) → ${result.newPrimary} ` +
          `(${result.method}, epoch ${result.epoch}, LSN ${result.lsn}); first write acknowledged by it ${r.rto.toFixed(2)} s after the fault, ` +
          `${r.operatorRto.toFixed(2)} s after the operator's start (failoverRegion ${result.rtoSeconds.toFixed(2)} s: ` +
          PHASES.filter((k) => result.phases[k] !== undefined)
            .map((k) => `${k} ${(result.phases[k]! / 1000).toFixed(2)}`)
            .join(', ') +
          `${restoredHow}); RPO ${stranded.length} stranded, age span ${r.rpoSeconds.toFixed(2)} s; ` +
          `region ${HOME} back after ${restart.toFixed(1)} s (` +
          Object.entries(upIn)
            .map(([k, v]) => `${k} ${v.toFixed(1)}`)
            .join(', ') +
          `), its monitor stood down ${standDown.toFixed(1)} s later; failback ${failback.from} → ${failback.to} ` +
          `in ${failbackSeconds.toFixed(1)} s (writes paused ${failback.writePauseMs} ms, rejoined ` +
          failback.rejoined.map((j) => `${j.node}${j.rebuilt ? ' rebuilt' : ''}`).join(', ') +
          `); ${r.acked.toLocaleString('en-US')} acknowledged, ${stranded.length - r.notKept} stranded kept aside on ${from.id}` +
          (notes.length ? `; note: ${notes.join('; ')}` : ''),
      );
    }

    log('');
    const fmt = (v: number) => (Number.isFinite(v) ? v.toFixed(3) : '-').padStart(8);
    // One column per mode; replica rounds one per lag.
    const groups: Array<{ mode: Mode; title: string; rounds: Round[] }> = [];
    for (const lag of lags.filter((l, i) => lags.indexOf(l) === i)) {
      const rs = done.filter((r) => r.mode === 'replica' && r.lagMs === lag);
      if (rs.length) groups.push({ mode: 'replica', title: `replica lag ${lag} ms`, rounds: rs });
    }
    const archived = done.filter((r) => r.mode === 'archive');
    if (archived.length) groups.push({ mode: 'archive', title: 'archive', rounds: archived });
    const width = Math.max(17, ...groups.map((g) => `${g.title} (${g.rounds.length})`.length));
    const row = (label: string, pick: (r: Round) => number, note = '') =>
      log(
        `${label.padEnd(16)}` +
          groups
            .map((g) => {
              const v = g.rounds.map(pick);
              return `${' '.repeat(width - 17)}${fmt(percentile(v, 50))} ${fmt(percentile(v, 99))}   `;
            })
            .join('') +
          note,
      );
    log(`region losses under a steady write load, ${done.length} rounds; seconds unless said`);
    log(`${''.padEnd(16)}${groups.map((g) => `${`${g.title} (${g.rounds.length})`.padStart(width)}   `).join('')}`);
    log(`${''.padEnd(16)}${groups.map(() => `${'p50'.padStart(width - 9)} ${'p99'.padStart(8)}   `).join('')}`);
    for (const k of PHASES) row(k, (r) => (r.result.phases[k] ?? NaN) / 1000);
    row('rtoSeconds', (r) => r.result.rtoSeconds, 'failoverRegion: workflow start → new primary promoted');
    row(
      'operator RTO',
      (r) => r.operatorRto,
      `failoverRegion started → first write acknowledged by the new primary (target ≤ ${TARGET_RTO_S} s)`,
    );
    row('RTO', (r) => r.rto, 'the fault → first write acknowledged by the new primary');
    row('RPO writes', (r) => r.stranded.length, 'count: acknowledged in region a, missing on the new primary');
    row(
      'RPO age',
      (r) => r.rpoSeconds,
      `the fault − the oldest stranded acknowledgement (target ≤ ${TARGET_RPO_S.replica} s with a replica, ` +
        `≤ ${TARGET_RPO_S.archive} s from the archive)`,
    );
    row('segments', (r) => r.result.restored?.segmentsReplayed ?? NaN, 'count: log segments the restore replayed');
    row('backup', (r) => r.archive?.backupSeconds ?? NaN, `the L2 backup started → in region ${STANDBY}'s store`);
    row('region back', (r) => r.restart, `region ${HOME}'s processes started again → all up, its worker polling`);
    row('stand down', (r) => r.standDown, `region ${HOME}'s worker polling → its monitor stood down`);
    row('failback', (r) => r.failbackSeconds, 'failbackRegion started → its result');
    row('failback pause', (r) => r.failback.writePauseMs / 1000, "failbackRegion's writePauseMs");
    let failed = false;
    for (const g of groups) {
      const rs = g.rounds;
      const rtoP99 = percentile(
        rs.map((r) => r.operatorRto),
        99,
      );
      const rpoP99 = percentile(
        rs.map((r) => r.rpoSeconds),
        99,
      );
      const target = TARGET_RPO_S[g.mode];
      const stranded = rs.reduce((n, r) => n + r.stranded.length, 0);
      const acked = rs.reduce((n, r) => n + r.acked, 0);
      const sum = (pick: (r: Round) => number) => rs.reduce((n, r) => n + pick(r), 0);
      const expected = g.mode === 'archive' ? 'restored' : 'promoted';
      const otherMethod = rs.filter((r) => r.result.method !== expected).length;
      const notArchiving = rs.filter((r) => r.notArchiving.length > 0).length;
      log(
        `${g.title.padEnd(18)} operator RTO p99 ${rtoP99.toFixed(2)} s (target ≤ ${TARGET_RTO_S} s: ` +
          `${rtoP99 <= TARGET_RTO_S ? 'met' : 'MISSED'}); RPO ${stranded} of ${acked.toLocaleString('en-US')} ` +
          `acknowledged writes stranded, age p99 ${rpoP99.toFixed(2)} s (target ≤ ${target} s: ` +
          `${rpoP99 <= target ? 'met' : 'MISSED'})`,
      );
      log(
        `${''.padEnd(18)} stranded not kept aside ${sum((r) => r.notKept)}, held again ${sum((r) => r.resurrected)}, ` +
          `at or below the new primary's LSN ${sum((r) => r.belowLsn)}` +
          (g.mode === 'archive' ? `, at or below the LSN of region ${STANDBY}'s backup ${sum((r) => r.inStore)}` : '') +
          '; ' +
          `other acknowledged writes lost ${sum((r) => r.lost)}, duplicated ${sum((r) => r.duplicated)}, ` +
          `held at another place ${sum((r) => r.changed)}, epochs acknowledged by two nodes ` +
          `${sum((r) => r.splitEpochs)} (each must be 0)` +
          (otherMethod ? `; ${otherMethod} rounds were not ${expected}` : '') +
          (notArchiving ? `; ${notArchiving} rounds found region ${HOME}'s archiver or copy not running` : ''),
      );
      const bad = (r: Round) =>
        r.notKept + r.resurrected + r.belowLsn + r.inStore + r.lost + r.duplicated + r.changed + r.splitEpochs;
      if (sum(bad) > 0) failed = true;
    }
    log(
      `webhook deliveries: ${hooks.received.length} for ${done.length * 2} moves (duplicates refused: ${hooks.duplicates}); ` +
        `bench took ${((Date.now() - benchStart) / 1000).toFixed(0)} s`,
    );
    if (failed) process.exitCode = 1;
  } catch (err) {
    // The logs go with the temp dir: what the nodes and workers said last is shown first.
    if (args.logs) log(`the logs of this run are kept in ${logDir}`);
    else await printTails(logDir, /^(a1|a2|b1|worker-.*)\.log$/);
    throw err;
  } finally {
    await cleanup();
  }
}

/** The last lines of the log files in `dir` whose names match, to stderr. */
async function printTails(dir: string, names: RegExp, lines = 12): Promise<void> {
  for (const name of (await readdir(dir).catch(() => [] as string[])).filter((n) => names.test(n)).sort()) {
    const text = await readFile(join(dir, name), 'utf8').catch(() => '');
    const tail = text.trimEnd().split('\n').slice(-lines);
    process.stderr.write(`--- the last lines of ${name}\n${tail.map((l) => `  ${l.slice(0, 500)}`).join('\n')}\n`);
  }
}

/** Sends a signal to a child process and waits for its exit (at once if it is gone). */
function stopChild(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((r) => {
    child.once('exit', () => r());
    child.kill(signal);
  });
}

/**
 * A worker as its own process, the way a region runs it (test/harness.ts spawnWorker): the config
 * from DR_CONFIG, `env` its region (DR_REGION, DR_NODES, TEMPORAL_ADDRESS); resolves once it says
 * it is polling.
 */
async function spawnWorker(configFile: string, env: NodeJS.ProcessEnv, logFile: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(REPO, 'src/worker.ts')], {
    cwd: REPO,
    env: { ...process.env, DR_CONFIG: configFile, DR_METRICS_PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // Always drained: a worker blocked on a full pipe would look like a frozen one.
  const out = createWriteStream(logFile, { flags: 'a' });
  child.stdout.pipe(out, { end: false });
  child.stderr.pipe(out, { end: false });
  child.once('close', () => out.end());
  const what = `the worker of region ${env.DR_REGION} (${env.DR_NODES})`;
  try {
    await within(
      `${what} to start`,
      120_000,
      new Promise<void>((resolvePromise, reject) => {
        const exited = (code: number | null) => reject(new Error(`${what} exited with ${code}; see ${logFile}`));
        child.once('exit', exited);
        createInterface({ input: child.stdout }).on('line', (line) => {
          if (!line.includes('"worker-started"')) return;
          child.off('exit', exited);
          resolvePromise();
        });
      }),
    );
  } catch (err) {
    await stopChild(child, 'SIGKILL');
    throw err;
  }
  return child;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
