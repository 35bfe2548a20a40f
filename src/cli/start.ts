/**
 * `npm start`: the whole system on one host. Whatever the config (file or env) does not name is
 * started here: a Temporal dev server with its Web UI (state under .data), an S3-compatible
 * server, a reference kimiclaw node with a small steady writer. Then the worker, the schedules,
 * and a banner that says where to click. Ctrl-C stops everything in reverse order.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Connection } from '@temporalio/client';
import { DEFAULT_DATABASE } from '../domain';
import { EMBEDDED_CONFIG_FILE, loadRawConfig, validateConfig, type Config } from '../config';
import { KimiclawDr, connectTemporal } from '../client';
import { NodeProcess } from '../dev/node-process';
import { createBucket, startTemporalDevServer, startVersitygw } from '../dev/servers';
import { isPortFree } from '../net';
import { startWriter, type RunningWriter } from '../node/writer';
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

export async function runStart(options: { dataDir: string }): Promise<void> {
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
  };
  const stops: Stop[] = [];
  let stopping = false;
  const stopAll = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    say('\nstopping …');
    for (const s of stops.reverse()) {
      await s.stop().catch((err: unknown) => say(`  ${s.name}: ${(err as Error).message}`));
      say(`  stopped ${s.name}`);
    }
  };
  const stopped = new Promise<void>((resolveStopped) => {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      process.once(signal, () => void stopAll().then(resolveStopped));
    }
  });

  try {
    let uiUrl: string | undefined;
    if (!raw.temporal?.address) {
      say('starting the Temporal dev server (state in .data/temporal.db) …');
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
      say('starting the S3-compatible server (versitygw, data in .data/s3) …');
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

    let writer: RunningWriter | undefined;
    if (!raw.databases) {
      say('starting a kimiclaw node (database in .data/nodes/node1) and a steady event writer …');
      const node = new NodeProcess('node1', join(dataDir, 'nodes'), DEFAULT_DATABASE, (await preferredPort(7171)) ?? 0);
      await node.start();
      stops.push({ name: 'kimiclaw node', stop: () => node.stop('SIGTERM') });
      writer = startWriter({ url: node.url, eventsPerBatch: 20, intervalMs: 200 });
      stops.push({ name: 'event writer', stop: () => writer!.stop() });
      raw.databases = [{ name: DEFAULT_DATABASE, nodes: [{ id: node.id, url: node.url, dataDir: node.dataDir }] }];
    }

    const config: Config = validateConfig(rawConfig);
    // Later CLI calls on this host (another terminal) find the servers started here.
    await writeFile(join(dataDir, 'kimiclaw-dr.json'), `${JSON.stringify(raw, null, 2)}\n`, { mode: 0o600 });

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
    await client.connection.close();
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
    say(`  schedules     ${schedules.join(', ')}`);
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
