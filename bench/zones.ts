/**
 * npm run bench:zones [-- --rounds 6] [--logs DIR]
 *
 * Losses of the primary's whole availability zone under a steady write load, on real processes on
 * loopback, in the topology of test/zones.test.ts: nodes a1, a2 in zone a and b1 in zone b; etcd
 * as three members a, b and c (c the witness); a Temporal dev server; a worker process per zone
 * (DR_NODES of its zone) and the monitor (workflow task timeout FAILOVER_TASK_TIMEOUT). Each round
 * waits for a steady cluster (the synchronous standby in the other zone), then takes out every
 * process of the primary's zone (its nodes, its etcd member, its worker) at once:
 *
 *   kill    SIGKILL (a zone that is gone); started again once the other zone acknowledges writes;
 *   freeze  SIGSTOP (a zone that hangs, nothing refused); SIGCONT once the other zone acknowledges.
 *
 * The primary moves to the other zone every round, so strictly alternating modes would always
 * kill zone a (two nodes) and always freeze zone b (one node): the modes run kill, freeze, freeze,
 * kill, … so that each hits both zones. A fresh writer per round records every acknowledgement
 * (when, by which node, at which epoch); after the zone is back and the cluster steady, the round's
 * ledger is checked on every node, and every node's fingerprint at the primary's acknowledged LSN
 * is compared with the primary's. Prints per mode p50/p99 of each failover phase and of
 * rtoSeconds (the failover workflow's result), the gaps around the workflow (the fault → the
 * monitor's first failed probe, promoted → first write acknowledged), the RTO (the fault → the
 * first write acknowledged in the surviving zone, by the writer's clock) and the RPO (acknowledged
 * writes lost, and the age span between the oldest and newest of them). Exits 1 when an
 * acknowledged write was lost (or held twice, or at another place, or two nodes acknowledged in
 * one epoch). Process output goes to <temp>/logs (removed at the end), or to --logs (kept).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { constants, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { primaryKey, syncKey, type SyncRecord } from '../src/activities/cluster';
import { KimiclawDr } from '../src/client';
import { parseConfig, type ConfigInput } from '../src/config';
import { type ConfigCenter, openConfigCenter, readPrimary } from '../src/config-center';
import { type ClusterWriter, ledgerEventsOn, startClusterWriter } from '../src/dev/cluster-writer';
import { type EtcdCluster, startEtcdCluster } from '../src/dev/etcd';
import { NodeProcess, initialClusterArgs } from '../src/dev/node-process';
import { steadyZones } from '../src/dev/zones';
import { startTemporalDevServer, type TemporalDevServer } from '../src/dev/servers';
import { newNodeToken } from '../src/dev/token-file';
import { FAILOVER_TASK_TIMEOUT, failoverWorkflowId, type FailoverInput } from '../src/failover/input';
import { freePort } from '../src/net';
import { NodeClient } from '../src/node-client';
import { NodeToken } from '../src/node-token';
import { startWebhookReceiver, type WebhookReceiver } from '../src/notify/receiver';
import type { FailoverResult } from '../src/workflows/cluster';
import { checkEvents } from '../test/ledger';
import { log } from './env';
import { percentile, until, within } from './poll';

const { values: args } = parseArgs({
  options: { rounds: { type: 'string', default: '6' }, logs: { type: 'string' } },
});
const REPO = resolve(__dirname, '..');
const CLUSTER = 'kimiclaw';
const KEY = primaryKey(CLUSTER);
const ZONE_OF: Record<string, string> = { a1: 'a', a2: 'a', b1: 'b' };
/** etcd members, one per zone; c holds no node (the witness). */
const ETCD_MEMBERS = ['a', 'b', 'c'];
const MODES = ['kill', 'freeze', 'freeze', 'kill'] as const;
type Mode = (typeof MODES)[number];
const MODE_TEXT: Record<Mode, string> = { kill: 'killed (SIGKILL)', freeze: 'frozen (SIGSTOP)' };
const PHASES = ['detect', 'confirm', 'fence', 'elect', 'config', 'promote', 'notify'] as const;
/** As bench:failover: the monitor probes every 250 ms. */
const PROBE_INTERVAL = '250ms';
/** Acknowledged batches waited for before the fault, after the first in the surviving zone, and after the rejoin. */
const ACKS_BETWEEN = 50;
/** The target for the loss of a zone, with RPO 0 (docs/architecture.md plans RTO 15 min, RPO < 1 min). */
const TARGET_RTO_P99_S = 5;

/** The fields of GET /health this bench reads. */
interface Health {
  role: string;
  epoch: number;
  lsn: number;
  ackedLsn: number;
  replicas?: Array<{ id: string; state: string }>;
}

async function health(url: string): Promise<Health> {
  const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1_000) });
  return (await res.json()) as Health;
}

/** What one round measured and found. */
interface Round {
  mode: Mode;
  zone: string;
  result: FailoverResult;
  /** Seconds: the fault → the first write acknowledged in the surviving zone. */
  rto: number;
  /** Seconds: the fault → the monitor's first failed probe (the failover's detectedAt). */
  toProbe: number;
  /** Seconds: the new primary promoted → the first write acknowledged by it. */
  toAck: number;
  /** Acknowledged writes (events) of the round, and the acknowledgement time of each lost one. */
  acked: number;
  lost: number[];
  duplicated: number;
  changed: number;
  /** Epochs in which two nodes acknowledged writes. */
  splitEpochs: number;
  /** Nodes whose fingerprint at the primary's acknowledged LSN differs from the primary's. */
  diverged: string[];
}

async function main(): Promise<void> {
  const rounds = Number(args.rounds);
  if (!Number.isInteger(rounds) || rounds < 1)
    throw new Error(`--rounds must be a positive integer, not ${args.rounds}`);
  const root = await mkdtemp(join(tmpdir(), 'kimiclaw-bench-zones-'));
  const logDir = args.logs ? resolve(args.logs) : join(root, 'logs');
  await mkdir(logDir, { recursive: true });

  const nodes: NodeProcess[] = [];
  const workers = new Map<string, ChildProcess>();
  let temporal: TemporalDevServer | undefined;
  let etcd: EtcdCluster | undefined;
  let hooks: WebhookReceiver | undefined;
  let connection: Connection | undefined;
  let center: ConfigCenter | undefined;
  let writer: ClusterWriter | undefined;

  let cleaning: Promise<void> | undefined;
  const cleanup = () =>
    (cleaning ??= (async () => {
      await writer?.stop().catch(() => undefined);
      // A frozen zone first: a stopped process does not die of SIGTERM, and etcd's watchdog is
      // frozen with its member.
      for (const n of nodes) n.signal('SIGCONT');
      for (const w of workers.values()) w.kill('SIGCONT');
      for (const m of etcd?.members ?? []) m.thaw();
      await center?.close().catch(() => undefined);
      await connection?.close().catch(() => undefined);
      await Promise.all([...workers.values()].map((w) => stopChild(w, 'SIGKILL')));
      await Promise.all(nodes.map((n) => n.stop('SIGKILL')));
      await Promise.all([temporal?.stop(), etcd?.stop(), hooks?.close()].map((p) => p?.catch(() => undefined)));
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
    [temporal, etcd, hooks] = await Promise.all([
      startTemporalDevServer({ uiPort: false, logFile: join(logDir, 'temporal.log') }),
      startEtcdCluster({ names: ETCD_MEMBERS, root: join(root, 'etcd') }),
      startWebhookReceiver({ secret: 'bench' }),
    ]);
    // Fresh tokens per run, handed to the nodes as the environment, never argv; the workers read
    // the control token from a file the config names.
    const control = newNodeToken();
    const eventsToken = newNodeToken();
    const events = new NodeToken(eventsToken);
    const tokenFile = join(root, 'node-token');
    await writeFile(tokenFile, `${control}\n`, { mode: 0o600 });
    const ids = Object.keys(ZONE_OF);
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
      // As test/harness.ts starts a cluster; the monitor then moves the standby to another zone.
      node.args = initialClusterArgs(ids, ports, i);
      // The production shape: each node renews its leadership lease with the etcd majority.
      node.args.push('--leader-etcd', etcd.endpoints.join(','), '--leader-ttl', '3s');
      nodes.push(node);
    }
    // Replicas first, so the primary finds them listening.
    for (const node of [...nodes.slice(1), nodes[0]!]) await node.start();

    const raw: ConfigInput = {
      temporal: { address: temporal.address, taskQueue: 'bench-zones' },
      storage: { bucket: 'unused' },
      databases: [
        { name: CLUSTER, nodes: nodes.map((n) => ({ id: n.id, url: n.url, dataDir: n.dataDir, zone: ZONE_OF[n.id] })) },
      ],
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
    const config = parseConfig(raw, 'bench zones');
    const configFile = join(root, 'kimiclaw-dr.json');
    await writeFile(configFile, JSON.stringify(raw, null, 2));
    connection = await Connection.connect({ address: temporal.address });
    const client = new Client({ connection });
    const dr = new KimiclawDr(client, config);
    const cc = openConfigCenter(config.cluster.configCenter);
    center = cc;

    const nodesOf = (zone: string) => nodes.filter((n) => ZONE_OF[n.id] === zone);
    const member = (zone: string) => etcd!.members.find((m) => m.name === zone)!;
    const startZoneWorker = async (zone: string) => {
      const ids = nodesOf(zone).map((n) => n.id);
      workers.set(zone, await spawnWorker(configFile, ids, join(logDir, `worker-${zone}.log`)));
    };
    const syncRecord = async () => (await cc.get(syncKey(CLUSTER))).value as SyncRecord | undefined;

    /**
     * The recorded primary answers as such at its epoch with every other node an in-sync replica,
     * and the sync record of that epoch names one standby, in another zone, with nothing pending.
     */
    const steady = () =>
      until(
        'a steady cluster with its standby in another zone',
        async () => {
          const record = (await readPrimary(cc, KEY)).record;
          const primary = nodes.find((n) => n.id === record?.node);
          if (!record || !primary) return false;
          const [p, s] = await Promise.all([health(primary.url), syncRecord()]);
          const steady = steadyZones(record, p, s, ids);
          return steady ? { primary, epoch: steady.epoch, standby: steady.standby } : false;
        },
        180_000,
        200,
      );

    /** Every process of the zone at once: its nodes, its etcd member, its worker. */
    const killZone = (zone: string) =>
      Promise.all([
        ...nodesOf(zone).map((n) => n.stop('SIGKILL')),
        member(zone).kill(),
        stopChild(workers.get(zone)!, 'SIGKILL'),
      ]);
    const freezeZone = (zone: string, signal: 'SIGSTOP' | 'SIGCONT') => {
      for (const n of nodesOf(zone)) n.signal(signal);
      if (signal === 'SIGSTOP') member(zone).freeze();
      else member(zone).thaw();
      workers.get(zone)!.kill(signal);
    };
    const restartZone = async (zone: string) => {
      await Promise.all([...nodesOf(zone).map((n) => n.start()), member(zone).restart()]);
      await startZoneWorker(zone);
    };

    // The monitor starts on zone a's worker (the first primary's zone), as in the zone tests:
    // losing zone a then also loses the worker that runs its watch and caches its workflow.
    await startZoneWorker('a');
    await dr.ensureMonitor(CLUSTER);
    await until('the monitor recording the sync standby', async () => !!(await syncRecord()), 120_000, 200);
    await startZoneWorker('b');
    log(
      `${nodes.map((n) => `${n.id} (zone ${ZONE_OF[n.id]})`).join(', ')}; etcd members ${ETCD_MEMBERS.join(', ')}; ` +
        `a worker per zone; monitor probing every ${PROBE_INTERVAL}, workflow task timeout ${FAILOVER_TASK_TIMEOUT}`,
    );

    const done: Round[] = [];
    for (let round = 1; round <= rounds; round++) {
      const mode = MODES[(round - 1) % MODES.length]!;
      const start = await steady();
      const zone = ZONE_OF[start.primary.id]!;
      // The round's ledger lies beyond every node's head now (no writes since the last check).
      const fromLsn = Math.min(...(await Promise.all(nodes.map(async (n) => (await health(n.url)).lsn))));
      const w = startClusterWriter(cc, { token: events, key: KEY, requestTimeoutMs: 2_000 });
      writer = w;
      await until('writes flowing', async () => w.acks.length >= ACKS_BETWEEN);

      const faultAt = Date.now();
      if (mode === 'kill') await killZone(zone);
      else freezeZone(zone, 'SIGSTOP');
      const first = await until('a write acknowledged in the surviving zone', async () =>
        w.acks.find((a) => a.at > faultAt && ZONE_OF[a.node] !== zone),
      );
      const acksAfter = w.acks.length;
      await until('more writes in the surviving zone', async () => w.acks.length >= acksAfter + ACKS_BETWEEN);
      const runId = (await client.workflow.getHandle(failoverWorkflowId(CLUSTER)).describe()).runId;
      const handle = client.workflow.getHandle(failoverWorkflowId(CLUSTER), runId);
      const result = (await within('the failover result', 120_000, handle.result())) as FailoverResult;
      // The monitor's first failed probe, as it handed it to the failover.
      const started = (await handle.fetchHistory()).events?.[0]?.workflowExecutionStartedEventAttributes;
      const payload = started?.input?.payloads?.[0];
      const input = payload
        ? client.options.loadedDataConverter.payloadConverter.fromPayload<FailoverInput>(payload)
        : undefined;
      const detectedAt = input?.detectedAt ?? NaN;
      const promotedAt = detectedAt + result.rtoSeconds * 1000;

      const backAt = Date.now();
      if (mode === 'kill') await restartZone(zone);
      else freezeZone(zone, 'SIGCONT');
      const after = await steady();
      const rejoin = (Date.now() - backAt) / 1000;
      const acksBack = w.acks.length;
      await until('writes after the zone rejoined', async () => w.acks.length >= acksBack + ACKS_BETWEEN);
      await w.stop();
      writer = undefined;

      // Every node at the primary's acknowledged head, then the round's ledger on each of them.
      const head = (await health(after.primary.url)).ackedLsn;
      await until(
        `every node at LSN ${head}`,
        async () =>
          (await Promise.all(nodes.map((n) => health(n.url)))).every((h) => h.lsn >= head && h.ackedLsn >= head),
        120_000,
        200,
      );
      // Every replica's fingerprint at that LSN is the primary's (rows, id range, content checksum).
      const fingerprint = async (n: NodeProcess) => {
        const f = await new NodeClient(n.id, n.url, events).stats(head);
        return JSON.stringify([f.rows, f.minId, f.maxId, f.maxLsn, f.checksum, f.fingerprintVersion]);
      };
      const primaryPrint = await fingerprint(nodes.find((n) => n.id === after.primary.id)!);
      const diverged: string[] = [];
      for (const n of nodes) if ((await fingerprint(n)) !== primaryPrint) diverged.push(n.id);
      const ackedAt = new Map<number, number>();
      for (const a of w.acks) for (const seq of a.seqs) ackedAt.set(seq, a.at);
      const lost = new Set<number>();
      const duplicated = new Set<number>();
      const changed = new Set<number>();
      for (const n of nodes) {
        const check = checkEvents(w, await ledgerEventsOn(n.url, events, fromLsn));
        check.lost.forEach((s) => lost.add(s));
        check.duplicated.filter((s) => ackedAt.has(s)).forEach((s) => duplicated.add(s));
        check.changed.forEach((c) => changed.add(c.seq));
      }
      const ackers = new Map<number, Set<string>>();
      for (const a of w.acks) ackers.set(a.epoch, (ackers.get(a.epoch) ?? new Set()).add(a.node));

      const r: Round = {
        mode,
        zone,
        result,
        rto: (first.at - faultAt) / 1000,
        toProbe: (detectedAt - faultAt) / 1000,
        toAck: (first.at - promotedAt) / 1000,
        acked: ackedAt.size,
        lost: [...lost].map((s) => ackedAt.get(s)!),
        duplicated: duplicated.size,
        changed: changed.size,
        splitEpochs: [...ackers.values()].filter((s) => s.size > 1).length,
        diverged,
      };
      done.push(r);
      const notes = [
        result.failedNode !== start.primary.id ? `the failover was of ${result.failedNode}` : '',
        result.newPrimary !== first.node ? `the first write was acknowledged by ${first.node}` : '',
        ZONE_OF[after.primary.id] === zone ? `the primary is back in zone ${zone} (${after.primary.id})` : '',
        diverged.length > 0 ? `DIFFERENT DATA than the primary at LSN ${head}: ${diverged.join(', ')}` : '',
      ].filter(Boolean);
      log(
        `  round ${round}: zone ${zone} ${MODE_TEXT[mode]}: ${start.primary.id} (standby ${start.standby}) → ${result.newPrimary} (epoch ${result.epoch}); ` +
          `first write acknowledged in the surviving zone after ${r.rto.toFixed(2)} s ` +
          `(first failed probe ${r.toProbe.toFixed(2)}, failover ${result.rtoSeconds.toFixed(2)}, promoted → ack ${r.toAck.toFixed(2)}); ` +
          PHASES.map((k) => `${k} ${((result.phases[k] ?? NaN) / 1000).toFixed(2)}`).join(', ') +
          `; zone back, steady after ${rejoin.toFixed(1)} s; ${r.acked.toLocaleString('en-US')} acknowledged, ` +
          `lost ${r.lost.length}` +
          (notes.length ? `; note: ${notes.join(', ')}` : ''),
      );
    }

    log('');
    const fmt = (v: number) => (Number.isFinite(v) ? v.toFixed(3) : '-').padStart(8);
    const byMode = (mode: Mode) => done.filter((r) => r.mode === mode);
    const modes = MODES.filter((m, i) => MODES.indexOf(m) === i && byMode(m).length > 0);
    const row = (label: string, pick: (r: Round) => number, note = '') =>
      log(
        `${label.padEnd(13)}` +
          modes
            .map((m) => {
              const v = byMode(m).map(pick);
              return `${fmt(percentile(v, 50))} ${fmt(percentile(v, 99))}   `;
            })
            .join('') +
          note,
      );
    const zonesOf = (m: Mode) => byMode(m).map((r) => r.zone);
    const zonesLost = modes.map((m) => `${m} ${zonesOf(m).join(',')}`).join(', ');
    log(`zone losses under a steady write load, ${done.length} rounds (zones lost: ${zonesLost}); seconds`);
    log(`${''.padEnd(13)}${modes.map((m) => `${`${m} (${byMode(m).length})`.padStart(17)}   `).join('')}`);
    log(`${''.padEnd(13)}${modes.map(() => `${'p50'.padStart(8)} ${'p99'.padStart(8)}   `).join('')}`);
    for (const k of PHASES) row(k, (r) => (r.result.phases[k] ?? NaN) / 1000);
    row('rtoSeconds', (r) => r.result.rtoSeconds, 'failover workflow: first failed probe → new primary promoted');
    row('fault→probe', (r) => r.toProbe, "the fault → the monitor's first failed probe");
    row('promoted→ack', (r) => r.toAck, 'promoted → first write acknowledged by the new primary');
    row(
      'RTO',
      (r) => r.rto,
      `the fault → first write acknowledged in the surviving zone (target p99 ≤ ${TARGET_RTO_P99_S} s; DR plan 15 min)`,
    );
    let failed = false;
    for (const m of modes) {
      const rs = byMode(m);
      const lostAt = rs.flatMap((r) => r.lost);
      const span = lostAt.length ? (Math.max(...lostAt) - Math.min(...lostAt)) / 1000 : 0;
      const integrity = rs.reduce((n, r) => n + r.duplicated + r.changed + r.splitEpochs + r.diverged.length, 0);
      const rtos = rs.map((r) => r.rto);
      const rtoP99 = percentile(rtos, 99);
      const acked = rs.reduce((n, r) => n + r.acked, 0);
      log(
        `${m.padEnd(7)} RTO p99 ${rtoP99.toFixed(2)} s (target ≤ ${TARGET_RTO_P99_S} s: ${rtoP99 <= TARGET_RTO_P99_S ? 'met' : 'MISSED'}); ` +
          `RPO ${lostAt.length} of ${acked.toLocaleString('en-US')} acknowledged writes lost, age span ${span.toFixed(2)} s ` +
          `(target 0, DR plan < 1 min: ${lostAt.length === 0 ? 'met' : 'MISSED'})`,
      );
      log(
        `${''.padEnd(7)} duplicated ${rs.reduce((n, r) => n + r.duplicated, 0)}, held at another place ` +
          `${rs.reduce((n, r) => n + r.changed, 0)}, epochs acknowledged by two nodes ` +
          `${rs.reduce((n, r) => n + r.splitEpochs, 0)}, nodes whose fingerprint differs from the primary's at its ` +
          `acknowledged LSN ${rs.reduce((n, r) => n + r.diverged.length, 0)} (each must be 0)`,
      );
      if (lostAt.length > 0 || integrity > 0) failed = true;
    }
    log(
      `webhook deliveries: ${hooks.received.length} for ${done.length} failovers (duplicates refused: ${hooks.duplicates})`,
    );
    if (failed) process.exitCode = 1;
  } finally {
    await cleanup();
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
 * A worker as its own process, the way a zone runs it (test/harness.ts spawnWorker): the config
 * from DR_CONFIG, DR_NODES the zone's nodes; resolves once it says it is polling.
 */
async function spawnWorker(configFile: string, localNodes: string[], logFile: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(REPO, 'src/worker.ts')], {
    cwd: REPO,
    env: { ...process.env, DR_CONFIG: configFile, DR_NODES: localNodes.join(','), DR_METRICS_PORT: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // Always drained: a worker blocked on a full pipe would look like a frozen one.
  const out = createWriteStream(logFile, { flags: 'a' });
  child.stdout.pipe(out, { end: false });
  child.stderr.pipe(out, { end: false });
  child.once('close', () => out.end());
  try {
    await within(
      `the worker of ${localNodes.join(',')} to start`,
      120_000,
      new Promise<void>((resolvePromise, reject) => {
        const exited = (code: number | null) =>
          reject(new Error(`the worker of ${localNodes.join(',')} exited with ${code}; see ${logFile}`));
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
