/**
 * External tools the project runs as child processes: the Temporal CLI (dev server), versitygw
 * (S3-compatible server for tests and the demo) and the `zstd` command (backup compression).
 *
 * Go tools are built once per machine into a cache outside the repo, keyed by version, so a fresh
 * clone, a `git clean` or a second checkout finds them again. Several test files start at once and
 * all ask for the same tools: a lock directory makes exactly one of them build while the others
 * wait, and the binary appears under its final name only when complete (build into a temp dir,
 * then rename).
 *
 * Run directly (`node --import tsx src/dev/tools.ts [--quiet] [--rebuild]`) to ensure every tool
 * and print the paths.
 */
import { spawn, spawnSync } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { access, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { homedir, hostname } from 'node:os';
import { delimiter, join } from 'node:path';

export const TEMPORAL_CLI_VERSION = '1.5.1';
export const VERSITYGW_VERSION = '1.7.0';
const MIN_GO = { major: 1, minor: 25 };

export const GO_MISSING_MESSAGE =
  'Go ≥ 1.25 is needed to build the Temporal CLI v1.5.1 and versitygw v1.7.0 once per machine: ' +
  'install it from https://go.dev/dl/ and put it on PATH, or put an existing `temporal` on PATH';

export interface ToolPaths {
  temporal: string;
  versitygw: string;
  zstd: string;
}

export interface EnsureOptions {
  /** Build again even when the cache has the binary (e.g. after changing build flags). */
  rebuild?: boolean;
  /** Where progress goes; defaults to stderr so stdout stays clean for callers that parse it. */
  log?: (line: string) => void;
}

interface GoTool {
  name: string;
  version: string;
  /** Package path for `go install <pkg>@v<version>`. */
  pkg: string;
  binary: string;
  /** `go install` leaves version variables at their "dev" defaults; stamp the real one in. */
  ldflags: string;
  /** Rough build time on a small machine, shown so a long pause is not mistaken for a hang. */
  eta: string;
}

const TEMPORAL_TOOL: GoTool = {
  name: 'temporal',
  version: TEMPORAL_CLI_VERSION,
  pkg: 'github.com/temporalio/cli/cmd/temporal',
  binary: 'temporal',
  ldflags: `-X github.com/temporalio/cli/temporalcli.Version=${TEMPORAL_CLI_VERSION}`,
  eta: '~4 min',
};

const VERSITYGW_TOOL: GoTool = {
  name: 'versitygw',
  version: VERSITYGW_VERSION,
  pkg: 'github.com/versity/versitygw/cmd/versitygw',
  binary: 'versitygw',
  ldflags: `-X main.Version=v${VERSITYGW_VERSION}`,
  eta: '~3 min',
};

/** A lock older than this belongs to a build that cannot still be running. */
const STALE_LOCK_MS = 30 * 60_000;
const LOCK_POLL_MS = 500;

const defaultLog = (line: string): void => {
  process.stderr.write(`${line}\n`);
};

/** `${KIMICLAW_DR_CACHE:-${XDG_CACHE_HOME:-~/.cache}/kimiclaw-dr}`: outside the repository, kept across runs. */
export function cacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  return env.KIMICLAW_DR_CACHE || join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'kimiclaw-dr');
}

/** `<cacheRoot>/tools` */
export function toolsCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(cacheRoot(env), 'tools');
}

/** Where a Go tool of a given version lives in the cache (whether or not it is built yet). */
export function cachedToolPath(name: string, version: string, binary = name): string {
  return join(toolsCacheDir(), `${name}-v${version}`, binary);
}

/** Whether file is a regular file this process may execute. */
export async function isExecutable(file: string): Promise<boolean> {
  try {
    await access(file, fsConstants.X_OK);
    return (await stat(file)).isFile();
  } catch {
    return false;
  }
}

/** The first executable called `name` on PATH, like `command -v`. */
export async function findOnPath(
  name: string,
  pathEnv: string | undefined = process.env.PATH,
): Promise<string | undefined> {
  for (const dir of (pathEnv ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, name);
    if (await isExecutable(candidate)) return candidate;
  }
  return undefined;
}

// One promise per tool and process: parallel callers in one process share a single check/build.
const pending = new Map<string, Promise<string>>();

function once(key: string, rebuild: boolean | undefined, make: () => Promise<string>): Promise<string> {
  const existing = pending.get(key);
  if (existing && !rebuild) return existing;
  const promise = make();
  pending.set(key, promise);
  // A failure must not be cached: the next caller may have fixed the cause (installed Go, …).
  promise.catch(() => pending.delete(key));
  return promise;
}

/** The Temporal CLI: `temporal` on PATH if there is one, else the cached build of v1.5.1. */
export function ensureTemporal(options: EnsureOptions = {}): Promise<string> {
  return once('temporal', options.rebuild, async () => {
    if (!options.rebuild) {
      const onPath = await findOnPath('temporal');
      if (onPath) return onPath;
    }
    return ensureGoTool(TEMPORAL_TOOL, options);
  });
}

/** versitygw v1.7.0 from the cache, built on first use. */
export function ensureVersitygw(options: EnsureOptions = {}): Promise<string> {
  return once('versitygw', options.rebuild, () => ensureGoTool(VERSITYGW_TOOL, options));
}

/** The `zstd` command; installed with apt-get when missing and we are root on Debian/Ubuntu. */
export function ensureZstd(options: EnsureOptions = {}): Promise<string> {
  return once('zstd', false, async () => {
    const found = await findOnPath('zstd');
    if (found) return found;
    return installZstd(options.log ?? defaultLog);
  });
}

/** Every external tool, built or installed when missing. */
export async function ensureTools(options: EnsureOptions = {}): Promise<ToolPaths> {
  // zstd first and alone: apt-get and two Go builds at once would crowd a small machine.
  const zstd = await ensureZstd(options);
  const [temporal, versitygw] = await Promise.all([ensureTemporal(options), ensureVersitygw(options)]);
  return { temporal, versitygw, zstd };
}

async function ensureGoTool(tool: GoTool, options: EnsureOptions): Promise<string> {
  const log = options.log ?? defaultLog;
  const target = cachedToolPath(tool.name, tool.version, tool.binary);
  if (!options.rebuild && (await isExecutable(target))) return target;
  const cacheDir = toolsCacheDir();
  await mkdir(cacheDir, { recursive: true });
  const lockDir = join(cacheDir, `.${tool.name}-v${tool.version}.lock`);
  const startedAt = Date.now();
  await withLock(lockDir, log, `building ${tool.name} v${tool.version}`, async () => {
    // Whoever held the lock before us may have just built it.
    const builtMeanwhile = (await stat(target).catch(() => undefined))?.mtimeMs;
    if (builtMeanwhile !== undefined && (!options.rebuild || builtMeanwhile >= startedAt)) {
      if (await isExecutable(target)) return;
    }
    await goInstall(tool, target, log);
  });
  return target;
}

async function goInstall(tool: GoTool, target: string, log: (line: string) => void): Promise<void> {
  const go = await findGo();
  const cacheDir = toolsCacheDir();
  const tmpBin = join(cacheDir, `.${tool.name}-v${tool.version}.tmp-${process.pid}`);
  await rm(tmpBin, { recursive: true, force: true });
  await mkdir(tmpBin, { recursive: true });
  log(`building ${tool.name} v${tool.version} into ${target} (once per machine, ${tool.eta})`);
  const started = Date.now();
  try {
    await run(go, ['install', `-ldflags=${tool.ldflags}`, `${tool.pkg}@v${tool.version}`], {
      // GOBIN is the only override: GOFLAGS, GOCACHE, GOPROXY stay the user's.
      env: { ...process.env, GOBIN: tmpBin },
      label: `go install ${tool.pkg}@v${tool.version}`,
    });
    await mkdir(join(target, '..'), { recursive: true });
    await rename(join(tmpBin, tool.binary), target);
  } finally {
    await rm(tmpBin, { recursive: true, force: true });
  }
  log(`built ${tool.name} v${tool.version} in ${Math.round((Date.now() - started) / 1000)} s`);
}

/** Absolute path of a usable `go` (≥ 1.25), or an error that says what to install. */
async function findGo(): Promise<string> {
  const go =
    (await findOnPath('go')) ?? ((await isExecutable('/usr/local/go/bin/go')) ? '/usr/local/go/bin/go' : undefined);
  if (!go) throw new Error(GO_MISSING_MESSAGE);
  const probe = spawnSync(go, ['env', 'GOVERSION'], { encoding: 'utf8' });
  const version = probe.stdout?.trim() ?? '';
  const match = /^go(\d+)\.(\d+)/.exec(version);
  if (!match)
    throw new Error(`${go} did not report its version (${probe.stderr?.trim() || version}). ${GO_MISSING_MESSAGE}`);
  const [major, minor] = [Number(match[1]), Number(match[2])];
  if (major < MIN_GO.major || (major === MIN_GO.major && minor < MIN_GO.minor)) {
    throw new Error(`${go} is ${version}, too old. ${GO_MISSING_MESSAGE}`);
  }
  return go;
}

async function installZstd(log: (line: string) => void): Promise<string> {
  const aptGet = await findOnPath('apt-get');
  const isRoot = process.getuid?.() === 0;
  if (!aptGet || !isRoot) {
    throw new Error(
      'the `zstd` command is needed to compress backups and was not found on PATH: install it ' +
        '(Debian/Ubuntu: `sudo apt-get install zstd`, Fedora: `sudo dnf install zstd`, macOS: `brew install zstd`)',
    );
  }
  const cacheDir = toolsCacheDir();
  await mkdir(cacheDir, { recursive: true });
  // apt-get holds its own lock and fails rather than waits: serialise our callers first.
  await withLock(join(cacheDir, '.zstd-apt.lock'), log, 'installing zstd', async () => {
    if (await findOnPath('zstd')) return;
    log('installing the `zstd` command with apt-get (once per machine)');
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    try {
      await run(aptGet, ['install', '-y', '--no-install-recommends', 'zstd'], { env, label: 'apt-get install zstd' });
    } catch {
      // A fresh image has no package lists yet.
      await run(aptGet, ['update'], { env, label: 'apt-get update' });
      await run(aptGet, ['install', '-y', '--no-install-recommends', 'zstd'], { env, label: 'apt-get install zstd' });
    }
  });
  const found = await findOnPath('zstd');
  if (!found) throw new Error('apt-get installed zstd but `zstd` is still not on PATH');
  return found;
}

interface RunOptions {
  env: NodeJS.ProcessEnv;
  label: string;
}

/** Runs a command, echoing its output to stderr (builds are long: show they move) and keeping a
 *  tail for the error message. */
function run(command: string, args: string[], options: RunOptions): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { env: options.env, stdio: ['ignore', 'pipe', 'pipe'] });
    const tail: string[] = [];
    const onData = (chunk: Buffer): void => {
      process.stderr.write(chunk);
      tail.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      tail.splice(0, Math.max(0, tail.length - 30));
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) return resolvePromise();
      const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      reject(new Error(`${options.label} ${how}; last output:\n${tail.join('\n')}`));
    });
  });
}

interface LockOwner {
  pid: number;
  host: string;
  since: number;
}

/** Runs `work` while holding a lock directory (mkdir is atomic, also on NFS-less shared disks).
 *  A lock whose owner process is gone, or that is older than any build can take, is broken. */
export async function withLock<T>(
  lockDir: string,
  log: (line: string) => void,
  what: string,
  work: () => Promise<T>,
): Promise<T> {
  let announced = false;
  for (;;) {
    try {
      await mkdir(lockDir);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    if (await isStaleLock(lockDir)) {
      await rm(lockDir, { recursive: true, force: true });
      continue;
    }
    if (!announced) {
      log(`waiting for another process that is ${what} (lock ${lockDir})`);
      announced = true;
    }
    await new Promise((r) => setTimeout(r, LOCK_POLL_MS));
  }
  const owner: LockOwner = { pid: process.pid, host: hostname(), since: Date.now() };
  await writeFile(join(lockDir, 'owner.json'), JSON.stringify(owner));
  try {
    return await work();
  } finally {
    await rm(lockDir, { recursive: true, force: true });
  }
}

async function isStaleLock(lockDir: string): Promise<boolean> {
  let since: number;
  try {
    since = (await stat(lockDir)).mtimeMs;
  } catch {
    return false; // just released: the next mkdir will tell
  }
  if (Date.now() - since > STALE_LOCK_MS) return true;
  let owner: LockOwner;
  try {
    owner = JSON.parse(await readFile(join(lockDir, 'owner.json'), 'utf8')) as LockOwner;
  } catch {
    // The owner writes this file right after mkdir; give it a moment before calling it dead.
    return Date.now() - since > 10_000;
  }
  if (owner.host !== hostname()) return false; // cannot probe a process on another host
  return !isAlive(owner.pid);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function main(argv: string[]): Promise<void> {
  const quiet = argv.includes('--quiet');
  const rebuild = argv.includes('--rebuild');
  const tools = await ensureTools({ rebuild });
  if (quiet) return;
  for (const [name, path] of Object.entries(tools)) process.stdout.write(`${name.padEnd(10)}${path}\n`);
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`kimiclaw-dr tools: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
}
