/**
 * `npm start`: the whole system on one host. Whatever the config (file or env) does not name is
 * started here: a Temporal dev server with its Web UI (state under .data), an S3-compatible
 * server, a reference kimiclaw node with a small steady writer. Then the worker, the schedules,
 * and a banner that says where to click. Ctrl-C stops everything in reverse order.
 *
 * The nodes it starts require a control token: the configured one (nodeAuth), else one made on
 * the first run in .data/node-token (mode 0600). It reaches the nodes through --token-file or
 * their environment, and the worker, the writer and later CLI calls through the config.
 */
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { Connection } from '@temporalio/client';
import { DEFAULT_DATABASE } from '../domain';
import { EMBEDDED_CONFIG_FILE, etcdUrl, loadRawConfig, validateConfig, type Config } from '../config';
import { KimiclawDr, connectTemporal } from '../client';
import { type EtcdCluster, startEtcdCluster } from '../dev/etcd';
import { NodeProcess } from '../dev/node-process';
import { superviseNodes } from '../dev/node-supervisor';
import { replicationArgs } from '../dev/cluster-nodes';
import { NodeClient } from '../node-client';
import { createBucket, startTemporalDevServer, startVersitygw } from '../dev/servers';
import { freePort, isPortFree } from '../net';
import { primaryKey } from '../activities/cluster';
import { type ConfigCenter, openConfigCenter } from '../config-center';
import { type ClusterWriter, startClusterWriter } from '../dev/cluster-writer';
import { ensureTokenFile } from '../dev/token-file';
import { applySchedules } from '../schedules';
import { registerSearchAttributes } from '../search-attributes';
import { startWorker } from '../worker';

const EMBEDDED_S3 = { accessKey: 'kimiclaw-local', secretKey: 'kimiclaw-local-secret', bucket: 'kimiclaw-backups' };

type Stop = { name: string; stop: () => Promise<unknown> };

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

async function preferredPort(port: number): Promise<number | undefined> {
  return (await isPortFree(port)) ? port : undefined;
}

/** The zones topology: node id → zone; etcd has a member in each of zones a, b and the witness c. */
const ZONE_NODES: Array<{ id: string; zone: string }> = [
  { id: 'a1', zone: 'a' },
  { id: 'a2', zone: 'a' },
  { id: 'b1', zone: 'b' },
];

export async function runStart(options: { dataDir: string; topology?: 'single' | 'zones' }): Promise<void> {
  const zones = options.topology === 'zones';
  const dataDir = resolve(options.dataDir);
  await mkdir(dataDir, { recursive: true });
  const rawConfig = loadRawConfig({ file: process.env.DR_CONFIG ?? undefined });
  // A config written by an earlier `start` describes servers this run starts afresh.
  if (rawConfig.file && resolve(rawConfig.file) === resolve(EMBEDDED_CONFIG_FILE)) {
    rawConfig.raw = {};
    rawConfig.file = undefined;
  }
  const raw = rawConfig.raw as {
    temporal?: Record<string, unknown>;
    storage?: Record<string, unknown>;
    databases?: unknown[];
    metrics?: Record<string, unknown>;
    cluster?: Record<string, unknown>;
    nodeAuth?: { token?: unknown; tokenFile?: unknown };
  };
  const stops: Stop[] = [];
  // One stop, however many signals arrive: each waits for the same one.
  let stopping: Promise<void> | undefined;
  const stopAll = (): Promise<void> =>
    (stopping ??= (async () => {
      say('\nstopping …');
      for (const s of stops.reverse()) {
        await s.stop().catch((err: unknown) => say(`  ${s.name}: ${(err as Error).message}`));
        say(`  stopped ${s.name}`);
      }
    })());
  const stopped = new Promise<void>((resolveStopped) => {
    // SIGHUP too (the terminal closed): the nodes would take it as "reload the tokens" and stay.
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      // `on`, not `once`: while a handler of ours is listening, the servers' own handler
      // (src/dev/servers.ts) leaves the stopping to us instead of killing every child at once.
      process.on(signal, () => void stopAll().then(resolveStopped));
    }
  });

  try {
    let uiUrl: string | undefined;
    if (!raw.temporal?.address) {
      say(`starting the Temporal dev server (state in ${join(dataDir, 'temporal.db')}) …`);
      const temporal = await startTemporalDevServer({
        dbFile: join(dataDir, 'temporal.db'),
        port: await preferredPort(7233),
        uiPort: await preferredPort(8233),
        logFile: join(dataDir, 'temporal.log'),
      });
      stops.push({ name: 'Temporal dev server', stop: () => temporal.stop() });
      raw.temporal = { ...raw.temporal, address: temporal.address };
      uiUrl = temporal.uiUrl;
    }

    if (!raw.storage?.endpoint && !raw.storage?.bucket) {
      say(`starting the S3-compatible server (versitygw, data in ${join(dataDir, 's3')}) …`);
      const s3 = await startVersitygw({
        dir: join(dataDir, 's3'),
        ...EMBEDDED_S3,
        port: await preferredPort(7070),
        logFile: join(dataDir, 's3.log'),
      });
      stops.push({ name: 'S3 server', stop: () => s3.stop() });
      await createBucket(s3.endpoint, EMBEDDED_S3, EMBEDDED_S3.bucket);
      raw.storage = {
        ...raw.storage,
        endpoint: s3.endpoint,
        bucket: EMBEDDED_S3.bucket,
        accessKeyId: EMBEDDED_S3.accessKey,
        secretAccessKey: EMBEDDED_S3.secretKey,
      };
    }

    let etcd: EtcdCluster | undefined;
    if (zones && !raw.cluster) {
      // A fresh cluster each run (its members' ports are picked now); the nodes keep their roles
      // and epochs, and the monitor records the primary again from them.
      const etcdRoot = join(dataDir, 'zone-etcd');
      await rm(etcdRoot, { recursive: true, force: true });
      say('starting etcd: three members, one in each of zones a, b and c (the witness) …');
      etcd = await startEtcdCluster({ names: ['a', 'b', 'c'], root: etcdRoot });
      stops.push({ name: 'etcd', stop: () => etcd!.stop() });
      raw.cluster = {
        configCenter: { kind: 'etcd', endpoints: etcd.members.map((m) => ({ url: m.endpoint, zone: m.name })) },
      };
    }
    let writer: ClusterWriter | undefined;
    let center: ConfigCenter | undefined;
    let nodeProcesses: NodeProcess[] | undefined;
    if (!raw.databases) {
      const root = join(dataDir, zones ? 'zone-nodes' : 'nodes');
      const layout: Array<{ id: string; zone?: string }> = zones ? ZONE_NODES : [{ id: 'node1' }, { id: 'node2' }];
      say(
        zones
          ? `starting three kimiclaw nodes: a1 and a2 in zone a, b1 in zone b (a1 primary; its synchronous standby in zone b; ${root}) …`
          : `starting two kimiclaw nodes (node1 primary, node2 its synchronous replica; ${root}) …`,
      );
      const ports: number[] = [];
      for (const [i] of layout.entries()) ports.push((await preferredPort(7171 + i)) ?? (await freePort()));
      const configDir = rawConfig.file ? dirname(resolve(rawConfig.file)) : process.cwd();
      const credential = await nodeCredential(raw, configDir, dataDir);
      if (credential.created) say(`made a node control token in ${credential.tokenFile} (mode 0600)`);
      const nodes = layout.map(({ id }, i) => {
        const node = new NodeProcess(id, root, DEFAULT_DATABASE, ports[i]);
        node.env = credential.env;
        node.logFile = join(root, `${id}.log`);
        // A data directory made here is a new cluster: its nodes create their databases. On later
        // runs a missing database was lost, and the node waits "empty" to be restored or rebuilt.
        node.createIfMissing = !existsSync(node.dataDir);
        return node;
      });
      const urls = layout.map((l, i) => ({ ...l, url: `http://127.0.0.1:${ports[i]}` }));
      nodes.forEach((node, i) => {
        node.args = [
          ...replicationArgs(urls, i),
          ...credential.args,
          // The production shape: the primary renews its leadership lease with the etcd majority.
          ...(etcd ? ['--leader-etcd', etcd.endpoints.join(','), '--leader-ttl', '10s'] : []),
        ];
      });
      // One node that does not start (or starts damaged) does not take the others down.
      for (const node of [...nodes.slice(1), nodes[0]!]) {
        stops.push({ name: `kimiclaw ${node.id}`, stop: () => node.stop('SIGTERM') });
        await startNodeProcess(node);
      }
      nodeProcesses = nodes;
      const supervisor = superviseNodes(nodes, { delayMs: 5_000, start: startNodeProcess, say });
      stops.push({ name: 'node supervisor', stop: async () => supervisor.stop() });
      raw.databases = [
        {
          name: DEFAULT_DATABASE,
          nodes: nodes.map((n, i) => ({
            id: n.id,
            url: `http://127.0.0.1:${ports[i]}`,
            dataDir: n.dataDir,
            ...(layout[i]!.zone ? { zone: layout[i]!.zone } : {}),
          })),
        },
      ];
    }
    raw.cluster ??= { configCenter: { kind: 'file', path: join(dataDir, 'config-center.json') } };
    // Like the servers' ports: the default /metrics port when free, else a free one (0). A port
    // the config or DR_METRICS_PORT names is used as is.
    if (raw.metrics?.port === undefined) raw.metrics = { ...raw.metrics, port: (await preferredPort(9464)) ?? 0 };

    const config: Config = validateConfig(rawConfig);
    // Later CLI calls on this host (another terminal) find the servers started here. A token from
    // the environment is not written down: that terminal needs KIMICLAW_NODE_TOKEN as well.
    const { tokenFile } = config.nodeAuth;
    const written = { ...raw, nodeAuth: tokenFile ? { tokenFile } : undefined };
    await writeFile(join(dataDir, 'kimiclaw-dr.json'), `${JSON.stringify(written, null, 2)}\n`, { mode: 0o600 });

    if (!uiUrl) {
      const connection = await Connection.connect({
        address: config.temporal.address,
        tls: config.temporal.tls || undefined,
        apiKey: config.temporal.apiKey,
      });
      const added = await registerSearchAttributes(connection, config.temporal.namespace).catch((err: unknown) => {
        say(`warning: could not register search attributes (${(err as Error).message}); run \`kimiclaw-dr setup\``);
        return [];
      });
      if (added.length) say(`registered search attributes ${added.join(', ')}`);
      await connection.close();
    }

    const worker = await startWorker({ config });
    stops.push({ name: 'worker', stop: () => worker.shutdown() });
    worker.done.catch((err: unknown) => {
      say(`worker failed: ${(err as Error).message}`);
      process.kill(process.pid, 'SIGTERM');
    });

    const client = await connectTemporal(config);
    const applied = await applySchedules(client, config);
    const dr = new KimiclawDr(client, config);
    for (const db of config.databases) await dr.ensureLogArchive(db.name);
    const clusters = config.databases.filter((d) => d.nodes.length > 1).map((d) => d.name);
    for (const name of clusters) await dr.ensureMonitor(name);
    await client.connection.close();
    if (clusters.length > 0) {
      // A small steady load that follows the primary through failovers, as a client would.
      center = openConfigCenter(config.cluster.configCenter);
      writer = startClusterWriter(center, {
        token: config.nodeAuth.token,
        key: primaryKey(clusters[0]!),
        batch: 20,
        pauseMs: 200,
      });
      stops.push({ name: 'event writer', stop: () => writer!.stop().then(() => center!.close()) });
    }
    const schedules = [...applied.created, ...applied.updated, ...applied.unchanged];

    const ui = uiUrl ?? `your Temporal UI (${config.temporal.address})`;
    say('');
    say('kimiclaw-dr is running.');
    say('');
    say(`  Temporal UI   ${ui}`);
    say(`  metrics       ${worker.metricsServer?.url ?? '(off)'}`);
    say(`  S3 store      ${config.storage.endpoint ?? 'AWS S3'}  bucket ${config.storage.bucket}`);
    say(
      `  node          ${config.databases.map((d) => d.nodes.map((n) => `${d.name}/${n.id} ${n.url}`).join(', ')).join('; ')}`,
    );
    say(`  node token    ${describeNodeAuth(config)}`);
    say(`  schedules     ${schedules.join(', ')}`);
    if (clusters.length > 0) {
      say(`  failover      monitor-${clusters.join(', monitor-')}; config center ${describeCenter(config)}`);
    }
    say(
      `  log archive   ${config.databases.map((d) => `archive-log-${d.name}`).join(', ')} (every ${config.archive.interval / 1000} s)`,
    );
    say('');
    say('What to click:');
    say(
      `  • ${uiUrl ? `${uiUrl}/namespaces/${config.temporal.namespace}/schedules` : 'Schedules'}: the L1/L2/L3 backup schedules; open one and "Trigger" to back up now.`,
    );
    say(
      `  • Workflows → "Start Workflow": type "backup", task queue "${config.temporal.taskQueue}", input {"tier": "L2"}.`,
    );
    say('  • Open a backup workflow: its result lists rows, LSN, SHA-256, sizes and what was pruned.');
    if (zones && nodeProcesses) {
      const pids = (zone: string) => [
        ...nodeProcesses!.filter((n) => ZONE_NODES.find((z) => z.id === n.id)?.zone === zone).map((n) => n.pid),
        ...(etcd ? [`-${etcd.members.find((m) => m.name === zone)?.pid}`] : []),
      ];
      say(`  • Freeze zone a (its nodes and its etcd member): kill -STOP ${pids('a').join(' ')}`);
      say(
        '    b1 becomes primary within seconds; `npm run kimiclaw-dr -- cluster status` shows it and the sync record.',
      );
      say(
        `    Thaw it: kill -CONT ${pids('a').join(' ')} — a1 and a2 rejoin as replicas, the standby goes back to zone a.`,
      );
      say('    (This host runs one worker for every zone; README "Zones" shows a worker per zone.)');
    } else if (clusters.length > 0) {
      say(
        '  • Kill the primary (kill -9 the node1 process): monitor-kimiclaw starts failover-kimiclaw within seconds;',
      );
      say(
        '    or start "switchover" with input {"to": "node2"}; `npm run kimiclaw-dr -- cluster status` shows roles and lag.',
      );
    }
    say('');
    say('Or from another terminal:');
    say('  npm run kimiclaw-dr -- backup --tier L2 --wait');
    say('  npm run kimiclaw-dr -- backups list');
    say('  npm run kimiclaw-dr -- backups verify');
    say('');
    say('Ctrl-C stops everything.');
    await stopped;
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/**
 * Starts a node process and says what state it came up in when that is not ok: a damaged file (and
 * where it is; it is moved aside, not deleted, when the node is rebuilt or restored), no database,
 * or a write path that fails. A node that does not start at all is said too; the supervisor tries
 * it again.
 */
async function startNodeProcess(node: NodeProcess): Promise<void> {
  try {
    await node.start();
  } catch (err) {
    say(`${node.id} did not start: ${(err as Error).message.split('\n')[0]}`);
    return;
  }
  node.createIfMissing = false;
  const health = await new NodeClient(node.id, node.url, undefined, 5_000).health().catch(() => undefined);
  if (!health || health.status === 'ok') return;
  const file = join(node.dataDir, `${health.database}.duckdb`);
  if (health.status === 'damaged') {
    say(
      `${node.id} started DAMAGED (${health.damage?.reason ?? 'no reason given'}; detected by ${health.damage?.detectedBy ?? '?'}). ` +
        `It serves /health and refuses writes; its file ${file} stays where it is. monitor-${health.database} fails over ` +
        `from it or rebuilds it from the healthy node, which moves the file aside to ${file}.aside.<time>.damaged (a restore moves it to ${file}.corrupted.<time>; kept either way, never deleted).`,
    );
  } else if (health.status === 'empty') {
    say(
      `${node.id} has no database (${file} is missing) and waits "empty": restore it (\`kimiclaw-dr restore\`) ` +
        'or let the monitor rebuild it from the healthy node.',
    );
  } else {
    say(`${node.id} started ${health.status}${health.damage ? `: ${health.damage.reason}` : ''}`);
  }
}

/**
 * The credential of the nodes `start` runs: the configured token or token file, else a token file
 * made in .data/ on the first run (and recorded in `raw`, so the worker and the CLI send it).
 */
async function nodeCredential(
  raw: { nodeAuth?: { token?: unknown; tokenFile?: unknown } },
  configDir: string,
  dataDir: string,
): Promise<{ args: string[]; env: Record<string, string>; tokenFile?: string; created: boolean }> {
  const { token, tokenFile } = raw.nodeAuth ?? {};
  if (typeof token === 'string' && token !== '') {
    return { args: [], env: { KIMICLAW_NODE_TOKENS: token }, created: false };
  }
  if (typeof tokenFile === 'string' && tokenFile !== '') {
    const path = resolve(configDir, tokenFile);
    return { args: ['--token-file', path], env: {}, tokenFile: path, created: false };
  }
  const path = join(dataDir, 'node-token');
  const created = await ensureTokenFile(path);
  raw.nodeAuth = { tokenFile: path };
  return { args: ['--token-file', path], env: {}, tokenFile: path, created };
}

/** Where the node credential comes from, never the credential itself. */
function describeNodeAuth(config: Config): string {
  const { token, tokenFile } = config.nodeAuth;
  if (tokenFile) return `${tokenFile} (sent as Authorization: Bearer; docs/node-api.md)`;
  return token ? 'from KIMICLAW_NODE_TOKEN' : 'none configured: nodes must run with --insecure-no-auth';
}

function describeCenter(config: Config): string {
  const c = config.cluster.configCenter;
  return c.kind === 'etcd' ? `etcd ${c.endpoints.map(etcdUrl).join(', ')}` : `file ${c.path}`;
}
