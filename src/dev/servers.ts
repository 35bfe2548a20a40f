/**
 * Real servers as child processes on loopback: the Temporal dev server and versitygw (S3).
 * `npm start` runs them as the embedded single-host setup; the tests run them as fixtures.
 *
 * Every child runs in its own process group so stop() takes down anything it forked, and is
 * killed when this process exits, so an interrupted test run leaves no server behind holding
 * a port or a data directory.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { CreateBucketCommand, ListBucketsCommand, S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import { Connection } from '@temporalio/client';
import { freePort } from '../net';
import { SEARCH_ATTRIBUTES } from '../search-attributes';
import { ensureTemporal, ensureVersitygw } from './tools';

const LOOPBACK = '127.0.0.1';
const STOP_GRACE_MS = 5_000;
/** A loaded 2-core machine needs most of a minute to bring the dev server up. */
const TEMPORAL_START_TIMEOUT_MS = 90_000;
const VERSITYGW_START_TIMEOUT_MS = 30_000;
const LOG_TAIL_LINES = 40;

// A port that was free a moment ago can still be taken before we bind: the starters below
// retry on "address already in use".
export { freePort };

// ---------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------

interface ManagedChild {
  readonly name: string;
  readonly pid: number;
  /** Resolves when the process has exited; never rejects. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  isRunning(): boolean;
  /** The last lines the process printed (stdout and stderr interleaved). */
  tail(lines?: number): string;
  /** SIGTERM to the process group, SIGKILL after a grace period. */
  stop(): Promise<void>;
}

const liveChildren = new Set<ChildProcess>();
let exitHandlersInstalled = false;

/** Kills every live child when this process goes away, however it goes. */
function installExitHandlers(): void {
  if (exitHandlersInstalled) return;
  exitHandlersInstalled = true;
  // 'exit' handlers cannot wait: SIGKILL the groups synchronously.
  process.on('exit', () => {
    for (const child of liveChildren) killGroup(child, 'SIGKILL');
  });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      // When the application handles this signal itself it will exit in its own time, and the
      // 'exit' handler above cleans up then; otherwise restore the default: die by the signal.
      if (process.listenerCount(signal) > 1) return;
      for (const child of liveChildren) killGroup(child, 'SIGKILL');
      process.removeListener(signal, onSignal);
      process.kill(process.pid, signal);
    };
    process.on(signal, onSignal);
  }
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  }
}

interface SpawnOptions {
  name: string;
  command: string;
  args: string[];
  logFile?: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

async function spawnManaged(options: SpawnOptions): Promise<ManagedChild> {
  installExitHandlers();
  let log: WriteStream | undefined;
  if (options.logFile) {
    await mkdir(dirname(options.logFile), { recursive: true });
    log = createWriteStream(options.logFile, { flags: 'a' });
    log.write(`--- ${new Date().toISOString()} ${options.command} ${options.args.join(' ')}\n`);
  }
  const child = spawn(options.command, options.args, {
    // Own process group: stop() can signal everything the server forks, and a Ctrl-C in the
    // terminal reaches only us, so servers stop in our order, not all at once.
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: options.env ?? process.env,
    ...(options.cwd ? { cwd: options.cwd } : {}),
  });
  liveChildren.add(child);
  const ring: string[] = [];
  let partial = '';
  const onData = (chunk: Buffer): void => {
    log?.write(chunk);
    const lines = (partial + chunk.toString('utf8')).split('\n');
    partial = lines.pop() ?? '';
    ring.push(...lines);
    ring.splice(0, Math.max(0, ring.length - 200));
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolveExit) => {
    const done = (code: number | null, signal: NodeJS.Signals | null): void => {
      liveChildren.delete(child);
      log?.end();
      resolveExit({ code, signal });
    };
    // 'close', not 'exit': it waits for the pipes to drain, so the tail has the last words.
    child.on('close', done);
    // Spawn failures (ENOENT, EACCES) emit 'error' and no 'exit'.
    child.on('error', (err) => {
      ring.push(`spawn error: ${err.message}`);
      done(null, null);
    });
  });
  let running = true;
  void exited.then(() => (running = false));
  // A server the tests forget to stop must not keep the test process alive.
  child.unref();
  (child.stdout as Socket | null)?.unref();
  (child.stderr as Socket | null)?.unref();
  return {
    name: options.name,
    pid: child.pid ?? -1,
    exited,
    isRunning: () => running,
    tail: (lines = LOG_TAIL_LINES) => [...ring, partial].filter(Boolean).slice(-lines).join('\n'),
    stop: async () => {
      if (!running) return;
      killGroup(child, 'SIGTERM');
      const timer = setTimeout(() => killGroup(child, 'SIGKILL'), STOP_GRACE_MS);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Polls `probe` until it succeeds, the child dies, or the deadline passes. */
async function waitUntilReady(child: ManagedChild, timeoutMs: number, probe: () => Promise<void>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    if (!child.isRunning()) {
      const { code, signal } = await child.exited;
      throw new StartError(child, `exited (${signal ?? `code ${code}`}) before it answered`);
    }
    try {
      await probe();
      return;
    } catch (err) {
      lastError = err;
    }
    await sleep(250);
  }
  await child.stop();
  const why = lastError instanceof Error ? lastError.message : String(lastError);
  throw new StartError(child, `did not answer within ${Math.round(timeoutMs / 1000)} s (last error: ${why})`);
}

/** A server that failed to come up, with what it printed. */
export class StartError extends Error {
  readonly output: string;
  constructor(child: ManagedChild, problem: string) {
    const output = child.tail();
    super(`${child.name} ${problem}; last output:\n${output || '(none)'}`);
    this.name = 'StartError';
    this.output = output;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Picks a port and starts; when the port was taken between picking and binding, tries another. */
async function startOnFreePort<T>(fixedPort: number | undefined, start: (port: number) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const port = fixedPort ?? (await freePort());
    try {
      return await start(port);
    } catch (err) {
      const lostRace = err instanceof StartError && /address already in use/i.test(err.output);
      if (fixedPort !== undefined || !lostRace || attempt >= 3) throw err;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Temporal dev server
// ---------------------------------------------------------------------------------------------

export interface TemporalDevServerOptions {
  /** SQLite file that keeps workflow history across restarts; absent = in memory. */
  dbFile?: string;
  /** Created at start besides "default"; defaults to "default". */
  namespace?: string;
  /** Front-end gRPC port; defaults to a free one. */
  port?: number;
  /** Web UI port; absent = a free port, false = no UI. */
  uiPort?: number | false;
  /** Where the server's output goes; always kept in memory for error messages too. */
  logFile?: string;
  startTimeoutMs?: number;
}

export interface TemporalDevServer {
  /** host:port for TEMPORAL_ADDRESS / Connection.connect. */
  address: string;
  uiUrl?: string;
  namespace: string;
  logFile?: string;
  /** The server's process id (its own process group). */
  readonly pid: number;
  stop(): Promise<void>;
}

/** Starts `temporal server start-dev` on loopback and waits until the namespace answers. */
export async function startTemporalDevServer(options: TemporalDevServerOptions = {}): Promise<TemporalDevServer> {
  const temporal = await ensureTemporal();
  const namespace = options.namespace ?? 'default';
  if (options.dbFile) await mkdir(dirname(options.dbFile), { recursive: true });
  return startOnFreePort(options.port, async (port) => {
    const uiPort = options.uiPort === false ? undefined : (options.uiPort ?? (await freePort()));
    const args = temporalDevServerArgs({ port, uiPort, namespace, dbFile: options.dbFile });
    const child = await spawnManaged({
      name: 'temporal dev server',
      command: temporal,
      args,
      logFile: options.logFile,
    });
    const address = `${LOOPBACK}:${port}`;
    await waitUntilReady(child, options.startTimeoutMs ?? TEMPORAL_START_TIMEOUT_MS, () =>
      probeNamespace(address, namespace),
    );
    return {
      address,
      uiUrl: uiPort === undefined ? undefined : `http://${LOOPBACK}:${uiPort}`,
      namespace,
      logFile: options.logFile,
      pid: child.pid,
      stop: () => child.stop(),
    };
  });
}

function temporalDevServerArgs(o: { port: number; uiPort?: number; namespace: string; dbFile?: string }): string[] {
  const args = ['server', 'start-dev', '--ip', LOOPBACK, '--port', String(o.port), '--log-level', 'warn'];
  args.push(...(o.uiPort === undefined ? ['--headless'] : ['--ui-port', String(o.uiPort)]));
  if (o.dbFile) args.push('--db-filename', o.dbFile);
  // "default" always exists; naming it again is harmless but noisy.
  if (o.namespace !== 'default') args.push('--namespace', o.namespace);
  for (const [name, type] of Object.entries(SEARCH_ATTRIBUTES)) args.push('--search-attribute', `${name}=${type}`);
  return args;
}

async function probeNamespace(address: string, namespace: string): Promise<void> {
  // lazy + ensureConnected, not connect(): a failed connect() leaves its channel open and
  // retrying, which keeps the process alive after the caller has given up.
  const connection = Connection.lazy({ address, connectTimeout: 2_000 });
  try {
    await connection.ensureConnected();
    await connection.workflowService.describeNamespace({ namespace });
  } finally {
    await connection.close();
  }
}

// ---------------------------------------------------------------------------------------------
// versitygw (S3)
// ---------------------------------------------------------------------------------------------

export interface S3Credentials {
  accessKey: string;
  secretKey: string;
}

export interface VersitygwOptions extends S3Credentials {
  /** Root directory of the posix backend: each sub-directory is a bucket. */
  dir: string;
  port?: number;
  /**
   * Directory where versitygw keeps old object versions; setting it enables bucket versioning
   * (and Object Lock buckets get versioning turned on at creation). Must lie outside `dir`.
   */
  versioningDir?: string;
  logFile?: string;
  startTimeoutMs?: number;
}

export interface Versitygw extends S3Credentials {
  /** http://127.0.0.1:PORT, for S3Client({ endpoint, forcePathStyle: true }). */
  endpoint: string;
  region: string;
  logFile?: string;
  /** The process id of the server running now (-1 when stopped). */
  readonly pid: number;
  stop(): Promise<void>;
  /** Starts again on the same port and directories, for outage tests. */
  start(): Promise<void>;
  /** SIGSTOP freezes it (connections hang, nothing is refused), SIGCONT thaws it. */
  signal(signal: NodeJS.Signals): void;
}

export const VERSITYGW_REGION = 'us-east-1';

/** Starts versitygw with the posix backend on loopback and waits until it answers S3 calls. */
export async function startVersitygw(options: VersitygwOptions): Promise<Versitygw> {
  const versitygw = await ensureVersitygw();
  await mkdir(options.dir, { recursive: true });
  if (options.versioningDir) await mkdir(options.versioningDir, { recursive: true });
  let child: ManagedChild | undefined;
  const launch = async (port: number): Promise<void> => {
    const next = await spawnManaged({
      name: 'versitygw',
      command: versitygw,
      args: versitygwArgs(options, port),
      // The root credentials go through the environment: arguments are visible in every process list.
      env: { ...process.env, ROOT_ACCESS_KEY_ID: options.accessKey, ROOT_SECRET_ACCESS_KEY: options.secretKey },
      logFile: options.logFile,
    });
    const endpoint = `http://${LOOPBACK}:${port}`;
    await waitUntilReady(next, options.startTimeoutMs ?? VERSITYGW_START_TIMEOUT_MS, () => probeS3(endpoint, options));
    child = next;
  };
  let port = 0;
  await startOnFreePort(options.port, async (p) => {
    await launch(p);
    port = p;
  });
  return {
    endpoint: `http://${LOOPBACK}:${port}`,
    region: VERSITYGW_REGION,
    accessKey: options.accessKey,
    secretKey: options.secretKey,
    logFile: options.logFile,
    get pid() {
      return child?.isRunning() ? child.pid : -1;
    },
    stop: async () => {
      await child?.stop();
    },
    start: async () => {
      if (child?.isRunning()) return;
      await launch(port);
    },
    signal: (signal) => {
      if (child?.isRunning()) process.kill(child.pid, signal);
    },
  };
}

function versitygwArgs(o: VersitygwOptions, port: number): string[] {
  const args = ['--region', VERSITYGW_REGION];
  // --quiet drops the per-request log line; errors still print.
  args.push('--port', `${LOOPBACK}:${port}`, '--quiet', 'posix');
  if (o.versioningDir) args.push('--versioning-dir', o.versioningDir);
  args.push(o.dir);
  return args;
}

/** An S3 client for a loopback S3-compatible server (path-style: no per-bucket DNS names). */
export function s3ClientFor(endpoint: string, creds: S3Credentials): S3Client {
  return new S3Client({
    endpoint,
    region: VERSITYGW_REGION,
    forcePathStyle: true,
    credentials: { accessKeyId: creds.accessKey, secretAccessKey: creds.secretKey },
    // Fail fast while probing; callers wanting retries make their own client.
    maxAttempts: 1,
  });
}

async function probeS3(endpoint: string, creds: S3Credentials): Promise<void> {
  const client = s3ClientFor(endpoint, creds);
  try {
    await client.send(new ListBucketsCommand({}), { abortSignal: AbortSignal.timeout(2_000) });
  } finally {
    client.destroy();
  }
}

/** Creates a bucket unless it is already ours; with objectLock, Object Lock is enabled on it
 *  (which can only be done at creation). */
export async function createBucket(
  endpoint: string,
  creds: S3Credentials,
  bucket: string,
  options: { objectLock?: boolean } = {},
): Promise<void> {
  const client = s3ClientFor(endpoint, creds);
  try {
    await client.send(
      new CreateBucketCommand({ Bucket: bucket, ...(options.objectLock ? { ObjectLockEnabledForBucket: true } : {}) }),
    );
  } catch (err) {
    if (!(err instanceof S3ServiceException && err.name === 'BucketAlreadyOwnedByYou')) throw err;
  } finally {
    client.destroy();
  }
}

// ---------------------------------------------------------------------------------------------
// kimiclaw-dr worker
// ---------------------------------------------------------------------------------------------

/** `env` without this project's settings and credentials (DR_*, KIMICLAW_*): for a process configured apart. */
export function withoutOwnSettings(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([k]) => !k.startsWith('DR_') && !k.startsWith('KIMICLAW_')));
}

export interface DrWorkerProcess {
  readonly pid: number;
  isRunning(): boolean;
  stop(): Promise<void>;
  /** SIGKILL to its process group: gone at once, like a lost host. */
  kill(): Promise<void>;
}

/**
 * The kimiclaw-dr worker (src/worker.ts) as a process of its own, with only the configuration
 * `configFile` names: no DR_* variable or node token of this process reaches it. Ready once it
 * says it polls.
 */
export async function startDrWorker(options: {
  configFile: string;
  /** Set over the cleaned environment. */
  env?: Record<string, string>;
  logFile?: string;
  startTimeoutMs?: number;
}): Promise<DrWorkerProcess> {
  const env = withoutOwnSettings(process.env);
  const child = await spawnManaged({
    name: 'kimiclaw-dr worker',
    command: process.execPath,
    args: ['--import', 'tsx', join(__dirname, '..', 'worker.ts')],
    env: { ...env, ...options.env, DR_CONFIG: options.configFile },
    // tsx is resolved from the repository root, whatever the caller's working directory.
    cwd: join(__dirname, '..', '..'),
    logFile: options.logFile,
  });
  await waitUntilReady(child, options.startTimeoutMs ?? 120_000, async () => {
    if (!child.tail(LOG_TAIL_LINES * 5).includes('"worker-started"')) throw new Error('not polling yet');
  });
  return {
    pid: child.pid,
    isRunning: () => child.isRunning(),
    stop: () => child.stop(),
    kill: async () => {
      if (!child.isRunning()) return;
      process.kill(-child.pid, 'SIGKILL');
      await child.exited;
    },
  };
}
