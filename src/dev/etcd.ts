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

/** A member of a multi-member cluster: its name and the `name=peerUrl,…` list of every member. */
interface Membership {
  name: string;
  initialCluster: string;
  /** Heartbeat and election timeouts (ms), shorter than etcd's defaults for loopback tests. */
  heartbeatMs?: number;
  electionMs?: number;
}

/** Where a member runs: the address it listens on, and a command it runs under (argv prefix). */
export interface EtcdPlacement {
  /** Default 127.0.0.1. */
  host?: string;
  /** E.g. `ip netns exec <name>` (src/dev/netns.ts), which execs: the process group stays etcd's. */
  wrapper?: string[];
}

function etcdArgs(dataDir: string, ports: Ports, member?: Membership, host = LOOPBACK): string[] {
  const clientUrl = `http://${host}:${ports.client}`;
  const peerUrl = `http://${host}:${ports.peer}`;
  const name = member?.name ?? 'default';
  return [
    ...['--name', name, '--data-dir', dataDir],
    ...['--listen-client-urls', clientUrl, '--advertise-client-urls', clientUrl],
    ...['--listen-peer-urls', peerUrl, '--initial-advertise-peer-urls', peerUrl],
    ...['--initial-cluster', member?.initialCluster ?? `${name}=${peerUrl}`],
    ...(member ? ['--initial-cluster-token', 'kimiclaw-dev', '--initial-cluster-state', 'new'] : []),
    ...(member?.heartbeatMs ? ['--heartbeat-interval', String(member.heartbeatMs)] : []),
    ...(member?.electionMs ? ['--election-timeout', String(member.electionMs)] : []),
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
  readonly pid: number | undefined;
  stop(signal: 'SIGTERM' | 'SIGKILL'): Promise<void>;
  /** Sends a signal to the member's whole process group (SIGSTOP freezes it, SIGCONT thaws). */
  signal(signal: NodeJS.Signals): void;
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

async function launch(
  binary: string,
  dataDir: string,
  ports: Ports,
  timeoutMs: number,
  member?: Membership,
  placement: EtcdPlacement = {},
): Promise<EtcdProcess> {
  if (!exitHandlerInstalled) {
    exitHandlerInstalled = true;
    // 'exit' handlers cannot wait: SIGKILL the groups synchronously.
    process.on('exit', () => {
      for (const child of liveGroups) killGroup(child, 'SIGKILL');
    });
  }
  const host = placement.host ?? LOOPBACK;
  const [command, ...argv] = [
    ...(placement.wrapper ?? []),
    '/bin/sh',
    ...['-c', WATCHDOG, 'etcd', binary, ...etcdArgs(dataDir, ports, member, host)],
  ];
  const child = spawn(command!, argv, {
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
    // The child is unref'd: without this, a process with nothing else to do would end before the
    // exit is seen (an etcd member that ignores SIGTERM until the SIGKILL above).
    const alive = setInterval(() => undefined, 1_000);
    await exited;
    clearTimeout(timer);
    clearInterval(alive);
  };

  const endpoint = `http://${host}:${ports.client}`;
  const deadline = Date.now() + timeoutMs;
  let lastError = 'no answer yet';
  while (Date.now() < deadline) {
    if (!running) throw new EtcdStartError(`exited (${await exited}) before it answered`, lines.join('\n'));
    try {
      const response = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(1_000) });
      const body = (await response.json()) as { health?: string };
      if (body.health === 'true') return { pid: child.pid, stop, signal: (sig) => killGroup(child, sig) };
      lastError = `/health answered ${JSON.stringify(body)}`;
    } catch (err) {
      lastError = err instanceof Error ? err.message : String(err);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  await stop('SIGKILL');
  throw new EtcdStartError(`did not answer within ${timeoutMs / 1000} s (${lastError})`, lines.join('\n'));
}

// ---------------------------------------------------------------------------------------------
// A cluster of members, one per failure domain
// ---------------------------------------------------------------------------------------------

export interface EtcdMember extends EtcdServer {
  name: string;
  /** The member's process group (etcd and its watchdog): `kill -STOP -<pid>` freezes it. */
  readonly pid: number | undefined;
  /** SIGSTOP: the member hangs, nothing is refused (a partition-like failure). */
  freeze(): void;
  /** SIGCONT after freeze(). */
  thaw(): void;
}

export interface EtcdCluster {
  members: EtcdMember[];
  /** Every member's client URL, in member order. */
  endpoints: string[];
  stop(): Promise<void>;
}

export interface StartEtcdClusterOptions {
  /** Member names, e.g. one per zone: ['a', 'b', 'c']. */
  names: string[];
  /** Each member's data dir is <root>/<name>; the caller removes root. */
  root: string;
  startTimeoutMs?: number;
  /**
   * Per member name, where it runs (default: on 127.0.0.1, in this network namespace), e.g. one
   * member inside a network namespace: `{ a: { host: ns.address, wrapper: ns.exec } }`.
   */
  placement?: Record<string, EtcdPlacement>;
}

/**
 * A multi-member etcd cluster on loopback (a member per failure domain; `placement` may put a
 * member elsewhere, e.g. in a network namespace), with heartbeat 50 ms and election timeout
 * 500 ms so a lost leader is replaced within a second. Resolves once every member answers
 * /health, i.e. the cluster has a leader.
 */
export async function startEtcdCluster(options: StartEtcdClusterOptions): Promise<EtcdCluster> {
  const unknown = Object.keys(options.placement ?? {}).filter((name) => !options.names.includes(name));
  if (unknown.length > 0) throw new Error(`etcd placement names no member: ${unknown.join(', ')}`);
  const binary = await ensureEtcd();
  const timeoutMs = options.startTimeoutMs ?? START_TIMEOUT_MS;
  const ports: Ports[] = [];
  const taken = new Set<number>();
  for (let i = 0; i < options.names.length; i++) {
    const pick = async () => {
      let port = await freePort();
      while (taken.has(port)) port = await freePort();
      taken.add(port);
      return port;
    };
    ports.push({ client: await pick(), peer: await pick() });
  }
  const place = (name: string): EtcdPlacement => options.placement?.[name] ?? {};
  const hostOf = (name: string): string => place(name).host ?? LOOPBACK;
  const initialCluster = options.names.map((n, i) => `${n}=http://${hostOf(n)}:${ports[i]!.peer}`).join(',');
  const dirs = options.names.map((n) => join(options.root, n));
  for (const dir of dirs) await mkdir(dir, { recursive: true, mode: 0o700 });
  const membership = (name: string): Membership => ({ name, initialCluster, heartbeatMs: 50, electionMs: 500 });
  const launched = await Promise.allSettled(
    options.names.map((name, i) => launch(binary, dirs[i]!, ports[i]!, timeoutMs, membership(name), place(name))),
  );
  const failed = launched.find((r) => r.status === 'rejected');
  if (failed) {
    await Promise.all(launched.map((r) => (r.status === 'fulfilled' ? r.value.stop('SIGKILL') : undefined)));
    throw (failed as PromiseRejectedResult).reason;
  }
  const members = options.names.map((name, i): EtcdMember => {
    let child = (launched[i] as PromiseFulfilledResult<EtcdProcess>).value;
    return {
      name,
      get pid() {
        return child.pid;
      },
      endpoint: `http://${hostOf(name)}:${ports[i]!.client}`,
      dataDir: dirs[i]!,
      stop: () => child.stop('SIGTERM'),
      kill: () => child.stop('SIGKILL'),
      restart: async () => {
        child.signal('SIGCONT');
        await child.stop('SIGTERM');
        // A restarted member rejoins the existing cluster from its data dir; the others answer.
        child = await launch(binary, dirs[i]!, ports[i]!, timeoutMs, membership(name), place(name));
      },
      freeze: () => child.signal('SIGSTOP'),
      thaw: () => child.signal('SIGCONT'),
    };
  });
  return {
    members,
    endpoints: members.map((m) => m.endpoint),
    // Members left without a quorum may wait out a leader transfer on SIGTERM: a test cluster is
    // simply killed.
    stop: async () => {
      for (const m of members) m.thaw();
      await Promise.all(members.map((m) => m.kill().catch(() => undefined)));
    },
  };
}
