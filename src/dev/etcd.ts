/**
 * etcd for tests and the dev setup: found or installed once per machine, then run on loopback.
 *
 * The binary is `etcd` on PATH when there is one; otherwise Debian's `etcd-server` package,
 * fetched with `apt-get download` (no root needed) and unpacked into the tools cache next to
 * the Go tools of tools.ts. As there, a lock directory makes one process unpack while the others
 * wait, and the unpacked tree appears under its final name only when complete.
 *
 * Like the servers of servers.ts, each etcd runs in its own process group and is SIGKILLed when
 * this process exits. For deaths without an 'exit' event (a fatal signal, SIGKILL, a crash)
 * etcd runs under a small sh wrapper that holds a pipe from us: when the pipe reaches EOF,
 * however we died, the wrapper kills etcd. (Signal handlers would not do here: servers.ts
 * decides whether to die from a signal by whether it is the only listener.)
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rename, rm, stat } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../net';
import { findOnPath, isExecutable, toolsCacheDir, withLock } from './tools';

const LOOPBACK = '127.0.0.1';
const PACKAGE = 'etcd-server';
const START_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 5_000;

export const ETCD_MISSING_MESSAGE =
  'etcd is needed for the config center tests and was not found on PATH, and it cannot be ' +
  'fetched without apt-get and dpkg: install it (Debian/Ubuntu: `apt-get install etcd-server`; ' +
  'elsewhere put an etcd ≥ 3.4 binary on PATH)';

const execFileAsync = promisify(execFile);
let pending: Promise<string> | undefined;

export interface EnsureEtcdOptions {
  /** Ignore an etcd on PATH and use (or fetch) the cached Debian one. */
  skipPath?: boolean;
  log?: (line: string) => void;
}

/** Path of an etcd binary: on PATH, else cached, else fetched from Debian into the cache. */
export function ensureEtcd(options: EnsureEtcdOptions = {}): Promise<string> {
  if (options.skipPath) return findOrFetch(options);
  pending ??= (async () => (await findOnPath('etcd')) ?? findOrFetch(options))();
  // A failure must not stick: the caller may install etcd and ask again.
  pending.catch(() => (pending = undefined));
  return pending;
}

async function findOrFetch(options: EnsureEtcdOptions): Promise<string> {
  const cached = await findCached();
  if (cached) return cached;
  const cacheDir = toolsCacheDir();
  await mkdir(cacheDir, { recursive: true });
  const log = options.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  return withLock(join(cacheDir, `.${PACKAGE}.lock`), log, `unpacking ${PACKAGE}`, async () => {
    // Whoever held the lock before us may have just unpacked it.
    return (await findCached()) ?? fetchFromDebian(cacheDir, log);
  });
}

/** `<cache>/etcd-server-<version>/usr/bin/etcd`, newest unpacked first. */
async function findCached(): Promise<string | undefined> {
  const cacheDir = toolsCacheDir();
  const names = await readdir(cacheDir).catch(() => [] as string[]);
  const candidates: { binary: string; mtimeMs: number }[] = [];
  for (const name of names.filter((n) => n.startsWith(`${PACKAGE}-`))) {
    const binary = join(cacheDir, name, 'usr', 'bin', 'etcd');
    if (!(await isExecutable(binary))) continue;
    candidates.push({ binary, mtimeMs: (await stat(join(cacheDir, name))).mtimeMs });
  }
  return candidates.sort((a, b) => b.mtimeMs - a.mtimeMs)[0]?.binary;
}

async function fetchFromDebian(cacheDir: string, log: (line: string) => void): Promise<string> {
  const aptGet = await findOnPath('apt-get');
  const dpkg = await findOnPath('dpkg');
  const dpkgDeb = await findOnPath('dpkg-deb');
  if (!aptGet || !dpkg || !dpkgDeb) throw new Error(ETCD_MISSING_MESSAGE);
  const work = await mkdtemp(join(cacheDir, `.${PACKAGE}.tmp-`));
  try {
    log(`fetching ${PACKAGE} with apt-get download into ${cacheDir} (once per machine)`);
    await aptDownload(aptGet, work);
    const deb = (await readdir(work)).find((f) => f.endsWith('.deb'));
    if (!deb) throw new Error(`apt-get download ${PACKAGE} left no .deb in ${work}`);
    const debPath = join(work, deb);
    const version = (await execFileAsync(dpkgDeb, ['-f', debPath, 'Version'])).stdout.trim();
    const finalDir = join(cacheDir, `${PACKAGE}-${version}`);
    const unpacked = join(work, 'root');
    await execFileAsync(dpkg, ['-x', debPath, unpacked]);
    if (!(await isExecutable(join(unpacked, 'usr', 'bin', 'etcd')))) {
      throw new Error(`${deb} has no usr/bin/etcd`);
    }
    await rm(finalDir, { recursive: true, force: true }); // an incomplete leftover, else findCached had it
    await rename(unpacked, finalDir);
    log(`unpacked ${PACKAGE} ${version} into ${finalDir}`);
    return join(finalDir, 'usr', 'bin', 'etcd');
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** apt-get download; after one `apt-get update` when the package lists are missing or stale. */
async function aptDownload(aptGet: string, cwd: string): Promise<void> {
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  try {
    await execFileAsync(aptGet, ['download', PACKAGE], { cwd, env });
    return;
  } catch {
    // A fresh image has no package lists yet.
  }
  try {
    await execFileAsync(aptGet, ['update'], { env });
    await execFileAsync(aptGet, ['download', PACKAGE], { cwd, env });
  } catch (err) {
    const output = (err as { stderr?: string }).stderr?.trim().split('\n').slice(-5).join('\n');
    throw new Error(
      `could not fetch ${PACKAGE} with apt-get (${output || (err as Error).message}); ` +
        `as root run \`apt-get update && apt-get install ${PACKAGE}\`, or put etcd ≥ 3.4 on PATH`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Running etcd
// ---------------------------------------------------------------------------------------------

export interface StartEtcdOptions {
  /** Kept across stop()/restart(); defaults to a new temp dir. The caller removes it. */
  dataDir?: string;
  startTimeoutMs?: number;
}

export interface EtcdServer {
  /** Client URL, http://127.0.0.1:PORT. */
  endpoint: string;
  dataDir: string;
  /** SIGTERM (etcd shuts down cleanly), SIGKILL after 5 s. */
  stop(): Promise<void>;
  /** SIGKILL at once, as a crash would. */
  kill(): Promise<void>;
  /** Starts again on the same ports and data dir (stopping first if it still runs). */
  restart(): Promise<void>;
}

/** A single-member etcd on loopback with free ports, answering /health before this resolves. */
export async function startEtcd(options: StartEtcdOptions = {}): Promise<EtcdServer> {
  const binary = await ensureEtcd();
  // etcd wants its data dir private (0700); mkdtemp makes it so.
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'kimiclaw-etcd-')));
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const timeoutMs = options.startTimeoutMs ?? START_TIMEOUT_MS;
  const started = await launchOnFreePorts(binary, dataDir, timeoutMs);
  const ports = started.ports;
  let child = started.child;
  return {
    endpoint: `http://${LOOPBACK}:${ports.client}`,
    dataDir,
    stop: () => child.stop('SIGTERM'),
    kill: () => child.stop('SIGKILL'),
    restart: async () => {
      await child.stop('SIGTERM');
      child = await launch(binary, dataDir, ports, timeoutMs);
    },
  };
}

/** A port free a moment ago can be taken before etcd binds it: then pick others and try again. */
async function launchOnFreePorts(
  binary: string,
  dataDir: string,
  timeoutMs: number,
): Promise<{ child: EtcdProcess; ports: Ports }> {
  for (let attempt = 1; ; attempt++) {
    const client = await freePort();
    let peer = await freePort();
    while (peer === client) peer = await freePort();
    const ports = { client, peer };
    try {
      return { child: await launch(binary, dataDir, ports, timeoutMs), ports };
    } catch (err) {
      const lostRace = err instanceof EtcdStartError && /address already in use/i.test(err.output);
      if (!lostRace || attempt >= 3) throw err;
    }
  }
}

/** etcd did not come up; `output` has the last lines it printed. */
export class EtcdStartError extends Error {
  constructor(
    problem: string,
    readonly output: string,
  ) {
    super(`etcd ${problem}; last output:\n${output || '(none)'}`);
    this.name = 'EtcdStartError';
  }
}

interface Ports {
  client: number;
  peer: number;
}

function etcdArgs(dataDir: string, ports: Ports): string[] {
  const clientUrl = `http://${LOOPBACK}:${ports.client}`;
  const peerUrl = `http://${LOOPBACK}:${ports.peer}`;
  return [
    ...['--name', 'default', '--data-dir', dataDir],
    ...['--listen-client-urls', clientUrl, '--advertise-client-urls', clientUrl],
    ...['--listen-peer-urls', peerUrl, '--initial-advertise-peer-urls', peerUrl],
    ...['--initial-cluster', `default=${peerUrl}`],
    // Only warnings and errors: the tail shown on a failed start is then about the failure.
    ...['--logger', 'zap', '--log-level', 'warn'],
  ];
}

/**
 * Runs etcd (its arguments follow the script), and kills it when stdin reaches EOF, i.e. when
 * the process holding the other end is gone. Background jobs of a non-interactive sh read
 * /dev/null, hence the copy of stdin on fd 3.
 */
const WATCHDOG = `exec 3<&0 </dev/null
"$@" &
child=$!
{ while read -r _ <&3; do :; done; kill -KILL "$child" 2>/dev/null; } &
watchdog=$!
wait "$child"
status=$?
kill "$watchdog" 2>/dev/null
exit "$status"`;

interface EtcdProcess {
  stop(signal: 'SIGTERM' | 'SIGKILL'): Promise<void>;
}

const liveGroups = new Set<ChildProcess>();
let exitHandlerInstalled = false;

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

async function launch(binary: string, dataDir: string, ports: Ports, timeoutMs: number): Promise<EtcdProcess> {
  if (!exitHandlerInstalled) {
    exitHandlerInstalled = true;
    // 'exit' handlers cannot wait: SIGKILL the groups synchronously.
    process.on('exit', () => {
      for (const child of liveGroups) killGroup(child, 'SIGKILL');
    });
  }
  const child = spawn('/bin/sh', ['-c', WATCHDOG, 'etcd', binary, ...etcdArgs(dataDir, ports)], {
    detached: true, // own process group: stop() reaches the wrapper, etcd and the watchdog
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  liveGroups.add(child);
  const lines: string[] = [];
  const onData = (chunk: Buffer): void => {
    lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
    lines.splice(0, Math.max(0, lines.length - 40));
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  let running = true;
  const exited = new Promise<string>((resolve) => {
    const done = (how: string): void => {
      running = false;
      liveGroups.delete(child);
      resolve(how);
    };
    // 'close' waits for etcd too: it holds the same stdout and stderr pipes as the wrapper.
    child.on('close', (code, signal) => done(signal ?? `code ${code}`));
    child.on('error', (err) => done(`spawn error: ${err.message}`));
  });
  // A server the tests forget to stop must not keep the test process alive.
  child.unref();
  for (const stream of [child.stdin, child.stdout, child.stderr]) (stream as Socket).unref();

  const stop = async (signal: 'SIGTERM' | 'SIGKILL'): Promise<void> => {
    if (!running) return;
    killGroup(child, signal);
    const timer = setTimeout(() => killGroup(child, 'SIGKILL'), STOP_GRACE_MS);
    await exited;
    clearTimeout(timer);
  };

  const endpoint = `http://${LOOPBACK}:${ports.client}`;
  const deadline = Date.now() + timeoutMs;
  let lastError = 'no answer yet';
  while (Date.now() < deadline) {
    if (!running) throw new EtcdStartError(`exited (${await exited}) before it answered`, lines.join('\n'));
    try {
      const response = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(1_000) });
      const body = (await response.json()) as { health?: string };
      if (body.health === 'true') return { stop };
      lastError = `/health answered ${JSON.stringify(body)}`;
    } catch (err) {
      lastError = err instanceof Error ? err.message : String(err);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  await stop('SIGKILL');
  throw new EtcdStartError(`did not answer within ${timeoutMs / 1000} s (${lastError})`, lines.join('\n'));
}
