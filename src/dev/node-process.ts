/**
 * A kimiclaw reference node as its own process, the way it runs in production: `npm start`
 * runs one for the demo, the tests run several and kill them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';

/** A kimiclaw reference node running as its own process. */
export class NodeProcess {
  url = '';
  private child: ChildProcess | undefined;
  private port = 0;
  readonly dataDir: string;
  /** More flags for main.ts (e.g. --role replica, --replica id=url,sync); read at each start(). */
  args: string[] = [];
  /** Environment over the parent's, e.g. KIMICLAW_NODE_TOKENS (tokens never go in args). */
  env: Record<string, string> = {};
  /** When set, everything the process prints is appended here too. */
  logFile: string | undefined;
  /** The address it listens on (--host); read at each start(). */
  host = '127.0.0.1';
  /**
   * A command the node runs under, its argv appended (e.g. `ip netns exec <name>`, which execs it:
   * the pid, signals and stop() stay the node's); read at each start().
   */
  wrapper: string[] = [];
  /**
   * Create the database when it is missing (--init, in the role --role names, else primary): for a
   * node whose data directory was just made. Off, a node without its database waits "empty".
   */
  createIfMissing = false;

  constructor(
    readonly id: string,
    root: string,
    readonly database = 'kimiclaw',
    port = 0,
  ) {
    this.dataDir = join(root, id);
    this.port = port;
  }

  async start(): Promise<void> {
    await mkdir(this.dataDir, { recursive: true });
    if (this.logFile) await mkdir(dirname(this.logFile), { recursive: true });
    const args = ['--import', 'tsx', join(__dirname, '..', 'node', 'main.ts')];
    args.push('--id', this.id, '--data-dir', this.dataDir, '--host', this.host, '--port', String(this.port));
    args.push('--database', this.database, ...this.args);
    if (this.createIfMissing) {
      const role = this.args[this.args.indexOf('--role') + 1];
      args.push('--init', this.args.includes('--role') && role ? role : 'primary');
    }
    // tsx is resolved from the repository root, whatever the caller's working directory.
    const [command, ...argv] = [...this.wrapper, process.execPath, ...args];
    const child = spawn(command!, argv, {
      cwd: join(__dirname, '..', '..'),
      env: { ...process.env, ...this.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    if (this.logFile) {
      const log = createWriteStream(this.logFile, { flags: 'a' });
      child.stdout?.pipe(log, { end: false });
      child.stderr?.pipe(log, { end: false });
      child.once('close', () => log.end());
    }
    const stderr: string[] = [];
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      stderr.push(d);
      if (stderr.length > 50) stderr.shift();
    });
    this.url = await new Promise<string>((resolvePromise, reject) => {
      const timer = setTimeout(() => reject(new Error(`node ${this.id} did not start: ${stderr.join('')}`)), 60_000);
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`node ${this.id} exited with ${code}: ${stderr.join('')}`));
      });
      createInterface({ input: child.stdout! }).on('line', (line) => {
        try {
          const msg = JSON.parse(line) as { event?: string; url?: string };
          if (msg.event === 'listening' && msg.url) {
            clearTimeout(timer);
            resolvePromise(msg.url);
          }
        } catch {
          // not a JSON line
        }
      });
    });
    this.port = Number(new URL(this.url).port);
  }

  /** The port it listens on (kept across restarts, so its URL stays the same). */
  get listeningPort(): number {
    return this.port;
  }

  /** The process id while it runs (the benchmarks read its CPU time from /proc). */
  get pid(): number | undefined {
    return this.running ? this.child?.pid : undefined;
  }

  /** Whether the process is running. */
  get running(): boolean {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Sends a signal without waiting (SIGSTOP/SIGCONT freeze and thaw it: a hung node). */
  signal(signal: NodeJS.Signals): void {
    this.child?.kill(signal);
  }

  /** Stops the node: SIGTERM is a clean stop, SIGKILL a crash. Restart with start(). */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((r) => {
      child.once('exit', () => r());
      child.kill(signal);
    });
  }
}

/**
 * The role arguments of a new cluster's nodes, as the tests and benchmarks start one: the first
 * node primary, replicating to the second synchronously and to the others asynchronously; the
 * others replicas. (With zones the monitor then moves the standby to another zone.)
 */
export function initialClusterArgs(ids: readonly string[], ports: readonly number[], index: number): string[] {
  if (index > 0) return ['--role', 'replica'];
  return [
    '--role',
    'primary',
    ...ids
      .slice(1)
      .flatMap((other, j) => ['--replica', `${other}=http://127.0.0.1:${ports[j + 1]},${j === 0 ? 'sync' : 'async'}`]),
  ];
}
