/**
 * `npm start` on a data directory where one node's database file is damaged, with the real start
 * command (`node scripts/run.mjs start`) and everything it runs as real processes: a first run
 * makes the data directory and takes writes; stopped, node1's file gets both database headers
 * overwritten (DuckDB refuses to open it); the second run keeps going, says which node is damaged,
 * where its file is and that it is moved aside (kept, not deleted) when the node is rebuilt or
 * restored. node1 serves /health as damaged without crash-looping, node2 keeps serving and takes
 * over, and the rebuild moves the damaged file aside byte for byte. Every process start ran is
 * gone after each stop.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { damageHeaders } from '../src/dev/damage';
import { readTokenFile } from '../src/node-token';
import { teeToLog } from './credentials';
import { REPO, waitFor } from './harness';

/** Variables that would point `start` at other servers, another config or other tokens. */
const CONFIG_ENV = /^(DR_|TEMPORAL_|S3_|AWS_|ETCD_|KIMICLAW_NODE_TOKEN|KIMICLAW_EVENTS_TOKEN)/;
const READY = 'kimiclaw-dr is running.';
/** A loaded 2-core machine: the Temporal dev server alone may take most of a minute. */
const START_TIMEOUT_MS = 150_000;

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** `node scripts/run.mjs start --data-dir DIR` as `npm start` runs it, its output kept. */
class StartCommand {
  output = '';
  readonly child: ChildProcess;
  readonly exited: Promise<Exit>;

  constructor(cwd: string, dataDir: string) {
    const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !CONFIG_ENV.test(name)));
    this.child = spawn(process.execPath, [join(REPO, 'scripts', 'run.mjs'), 'start', '--data-dir', dataDir], {
      cwd,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    teeToLog([this.child.stdout, this.child.stderr], 'start');
    for (const stream of [this.child.stdout, this.child.stderr]) {
      stream?.setEncoding('utf8').on('data', (d: string) => (this.output += d));
    }
    this.exited = new Promise((resolveExit) =>
      this.child.once('exit', (code, signal) => resolveExit({ code, signal })),
    );
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Output lines that start with `prefix` (what start says about a node). */
  lines(prefix: string): string[] {
    return this.output.split('\n').filter((l) => l.startsWith(prefix));
  }

  /**
   * Polls `check` until it answers something other than undefined or false (errors count as not
   * yet); fails at once, with start's output, when start exits meanwhile, and after `timeoutMs`.
   */
  async waitFor<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs: number): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    let last: unknown;
    for (;;) {
      if (!this.running)
        assert.fail(`start exited (${JSON.stringify(await this.exited)}) while waiting for ${what}:\n${this.output}`);
      try {
        const value = await check();
        if (value !== undefined && value !== false) return value;
      } catch (err) {
        last = err;
      }
      if (Date.now() > deadline) {
        const why = last ? `: ${(last as Error).message}` : '';
        assert.fail(`timed out after ${timeoutMs / 1000} s waiting for ${what}${why}\nstart's output:\n${this.output}`);
      }
      await sleep(250);
    }
  }

  /** Waits for the banner. */
  async ready(): Promise<void> {
    await this.waitFor('the "running" banner', async () => this.output.includes(READY), START_TIMEOUT_MS);
  }

  /** Sends the signal (Ctrl-C is SIGINT) and waits for the exit; SIGKILL after `graceMs`. */
  async stop(signal: NodeJS.Signals, graceMs = 60_000): Promise<Exit> {
    if (!this.running) return this.exited;
    this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Live processes whose command line mentions `text` (this test's unique temp dir), by pid. */
function processesMentioning(text: string): Array<{ pid: number; cmd: string }> {
  const found: Array<{ pid: number; cmd: string }> = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    let cmd: string;
    try {
      cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ').trim();
    } catch {
      continue; // gone meanwhile
    }
    if (cmd.includes(text)) found.push({ pid: Number(entry), cmd });
  }
  return found;
}

async function sha256(path: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(path))
    .digest('hex');
}

interface Health {
  status: string;
  writable?: boolean;
  role: string;
  epoch: number;
  lsn: number;
  damage?: { reason: string; detectedBy: string; at: string };
}
interface Append {
  lsn: number;
  count: number;
}
interface EventsPage {
  events: Array<{ lsn: number; kind: string; payload: string }>;
}
interface AsideList {
  aside: Array<{ name: string; path: string; reason: string; bytes: number }>;
}
interface ErrorBody {
  error: { code: string; message: string };
}

/** A running start's view: node URLs from the config it wrote, its token, its config center. */
class Deployment {
  constructor(
    readonly urls: Record<string, string>,
    private readonly token: string,
    readonly centerFile: string,
  ) {}

  static async read(dataDir: string): Promise<Deployment> {
    const config = JSON.parse(await readFile(join(dataDir, 'kimiclaw-dr.json'), 'utf8')) as {
      databases: Array<{ nodes: Array<{ id: string; url: string }> }>;
      nodeAuth: { tokenFile: string };
      cluster: { configCenter: { path: string } };
    };
    const urls = Object.fromEntries(config.databases[0]!.nodes.map((n) => [n.id, n.url]));
    return new Deployment(urls, readTokenFile(config.nodeAuth.tokenFile)[0]!, config.cluster.configCenter.path);
  }

  async call<T>(
    node: string,
    method: 'GET' | 'POST',
    path: string,
    body?: unknown,
  ): Promise<{ status: number; body: T }> {
    const res = await fetch(`${this.urls[node]}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${this.token}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
    return { status: res.status, body: (await res.json()) as T };
  }

  async health(node: string): Promise<Health> {
    const res = await fetch(`${this.urls[node]}/health`, { signal: AbortSignal.timeout(5_000) });
    assert.equal(res.status, 200, `${node} /health`);
    return (await res.json()) as Health;
  }

  append(node: string, marker: string) {
    const events = Array.from({ length: 5 }, (_, i) => ({ kind: marker, payload: { i } }));
    return this.call<Append & ErrorBody>(node, 'POST', '/events', { events });
  }

  /** The events of batch `lsn` on `node`. */
  async batch(node: string, lsn: number): Promise<EventsPage['events']> {
    const res = await this.call<EventsPage>(node, 'GET', `/events?afterLsn=${lsn - 1}&limit=100&toLsn=${lsn}`);
    assert.equal(res.status, 200, `${node} GET /events: ${JSON.stringify(res.body)}`);
    return res.body.events.filter((e) => e.lsn === lsn);
  }

  /** The primary the config center records (what clients follow). */
  async primary(): Promise<{ node: string; epoch: number } | undefined> {
    const center = JSON.parse(await readFile(this.centerFile, 'utf8')) as Record<
      string,
      { value?: { node: string; epoch: number } }
    >;
    return center['/services/kimiclaw/primary']?.value;
  }
}

void describe('npm start with a damaged database file', () => {
  let dir: string;
  let dataDir: string;
  let node1File: string;
  let start: StartCommand | undefined;
  /** The batch written in the first run (its LSN), to be found on both nodes later. */
  let firstBatch: number;
  let firstRunDone = false;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kimiclaw-dr-start-damaged-'));
    dataDir = join(dir, 'data');
    node1File = join(dataDir, 'nodes', 'node1', 'kimiclaw.duckdb');
  });

  after(async () => {
    if (start?.running) await start.stop('SIGTERM', 30_000);
    // Whatever a failed run left behind (start killed before it could stop its servers).
    for (const p of processesMentioning(dir)) {
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await rm(dir, { recursive: true, force: true });
  });

  /** Stops start with `signal`: a clean exit, every server stopped, no process left behind. */
  async function stopCleanly(signal: NodeJS.Signals): Promise<void> {
    const exit = await start!.stop(signal);
    assert.deepEqual(exit, { code: 0, signal: null }, `start's exit on ${signal}:\n${start!.output}`);
    for (const name of [
      'event writer',
      'worker',
      'kimiclaw node1',
      'kimiclaw node2',
      'S3 server',
      'Temporal dev server',
    ]) {
      assert.match(start!.output, new RegExp(`stopped ${name}\\n`), `start stopped ${name}`);
    }
    // Every server start ran had the data directory on its command line.
    await waitFor('no process of this start left', async () => processesMentioning(dir).length === 0, 10_000).catch(
      () => assert.fail(`left running: ${JSON.stringify(processesMentioning(dir), null, 1)}`),
    );
  }

  void test(
    'first run on a fresh data directory: node1 primary, node2 in sync, writes acknowledged',
    { timeout: 240_000 },
    async () => {
      start = new StartCommand(dir, dataDir);
      await start.ready();
      assert.match(start.output, /made a node control token in .*node-token \(mode 0600\)/);
      const d = await Deployment.read(dataDir);
      await start.waitFor(
        'node1 primary in the config center, both nodes ok',
        async () => {
          const [h1, h2, primary] = await Promise.all([d.health('node1'), d.health('node2'), d.primary()]);
          return (
            h1.status === 'ok' &&
            h1.role === 'primary' &&
            h2.status === 'ok' &&
            h2.role === 'replica' &&
            primary?.node === 'node1'
          );
        },
        60_000,
      );
      const written = await d.append('node1', 'start-damaged-1');
      assert.equal(written.status, 200, JSON.stringify(written.body));
      assert.equal(written.body.count, 5);
      firstBatch = written.body.lsn;
      // Acknowledged means the synchronous replica has it too (it serves the batch once it learns
      // that the batch was acknowledged, with the primary's next message).
      await start.waitFor(
        'node2 to serve the batch',
        async () => (await d.batch('node2', firstBatch)).length === 5,
        10_000,
      );
      await stopCleanly('SIGINT'); // Ctrl-C
      assert.ok(!existsSync(`${node1File}.wal`), 'a clean stop checkpoints node1 (no WAL beside its file)');
      firstRunDone = true;
    },
  );

  void test(
    'node1 file damaged: start keeps running, says so, node2 serves and takes over, the file is moved aside',
    { timeout: 300_000 },
    async (t) => {
      assert.ok(firstRunDone, 'the first run wrote a batch and stopped');
      await damageHeaders(node1File);
      const damagedSha = await sha256(node1File);
      const startedAt = Date.now();
      start = new StartCommand(dir, dataDir);
      const current = start;

      // start writes its config once both nodes run, before the worker (and so the monitor) starts:
      // what the nodes answer now is how they came up.
      await current.waitFor(
        'start to write its config (both nodes started)',
        async () => {
          const written = await stat(join(dataDir, 'kimiclaw-dr.json'));
          return written.mtimeMs >= startedAt;
        },
        START_TIMEOUT_MS,
      );
      const d = await Deployment.read(dataDir);
      const h1 = await d.health('node1');
      assert.equal(h1.status, 'damaged', JSON.stringify(h1));
      assert.equal(h1.writable, false);
      assert.equal(h1.role, 'none');
      assert.equal(h1.damage?.detectedBy, 'open');
      assert.match(h1.damage?.reason ?? '', /Corrupt database file/);
      const refused = await d.append('node1', 'start-damaged-refused');
      assert.equal(refused.status, 503);
      assert.equal(refused.body.error.code, 'Damaged');
      // The healthy node answers and serves what it holds, the first run's batch included (its
      // events only once a primary tells it again what was acknowledged: a restarted replica
      // serves /events up to the acknowledged LSN it recorded).
      const h2 = await d.health('node2');
      assert.equal(h2.status, 'ok', JSON.stringify(h2));
      const stats2 = await d.call<{ lsn: number; rows: number }>('node2', 'GET', '/stats');
      assert.equal(stats2.status, 200, JSON.stringify(stats2.body));
      assert.ok(stats2.body.lsn >= firstBatch && stats2.body.rows > 0, JSON.stringify(stats2.body));

      await current.ready();
      // What start says: which node, that its file is damaged, where it is, that it is moved aside
      // (kept, never deleted) when the node is rebuilt.
      const said = current.lines('node1 ');
      assert.equal(said.length, 1, `one line about node1:\n${current.output}`);
      const line = said[0]!;
      t.diagnostic(`start said: ${line}`);
      assert.match(line, /^node1 started DAMAGED \(.*Corrupt database file.*; detected by open\)/);
      assert.ok(line.includes(`its file ${node1File} stays where it is`), line);
      assert.ok(line.includes(`moves the file aside to ${node1File}.aside.`), line);
      assert.match(line, /\.damaged \(a restore moves it to .*\.corrupted\.<time>; kept either way, never deleted\)/);
      assert.deepEqual(current.lines('node2 '), [], 'nothing to say about node2');

      // node1 runs once: no crash loop (same process throughout, start never restarts it).
      const node1Processes = () => processesMentioning(`--data-dir ${join(dataDir, 'nodes', 'node1')} `);
      const [node1Process] = node1Processes();
      assert.ok(node1Process, 'node1 runs');
      assert.equal(node1Processes().length, 1);

      // node2 takes over (monitor-kimiclaw fails over from the damaged primary) and takes writes.
      await current.waitFor(
        'node2 recorded primary and ok',
        async () => {
          const [primary, h] = await Promise.all([d.primary(), d.health('node2')]);
          return primary?.node === 'node2' && primary.epoch >= 2 && h.status === 'ok' && h.role === 'primary';
        },
        120_000,
      );
      t.diagnostic(`node2 recorded primary ${((Date.now() - startedAt) / 1000).toFixed(1)} s after start began`);
      const second = await current.waitFor(
        'a write acknowledged by node2',
        async () => {
          const res = await d.append('node2', 'start-damaged-2');
          return res.status === 200 ? res.body : undefined;
        },
        60_000,
      );

      await current.waitFor(
        'node2 to serve both batches',
        async () =>
          (await d.batch('node2', firstBatch)).length === 5 && (await d.batch('node2', second.lsn)).length === 5,
        10_000,
      );

      // node1 is rebuilt from node2 as its replica, and holds both runs' writes.
      await current.waitFor(
        'node1 rebuilt: ok, replica, serving both batches',
        async () => {
          const h = await d.health('node1');
          if (h.status !== 'ok' || h.role !== 'replica' || h.lsn < second.lsn) return false;
          return (await d.batch('node1', firstBatch)).length === 5 && (await d.batch('node1', second.lsn)).length === 5;
        },
        120_000,
      );

      t.diagnostic(`node1 rebuilt ${((Date.now() - startedAt) / 1000).toFixed(1)} s after start began`);

      // The damaged file was moved aside, byte for byte, not deleted.
      const aside = await d.call<AsideList>('node1', 'GET', '/aside');
      assert.equal(aside.status, 200);
      assert.equal(aside.body.aside.length, 1, JSON.stringify(aside.body));
      const moved = aside.body.aside[0]!;
      assert.equal(moved.reason, 'damaged');
      assert.ok(moved.path.startsWith(`${node1File}.aside.`) && moved.path.endsWith('.damaged'), moved.path);
      assert.equal(await sha256(moved.path), damagedSha, 'the file moved aside is the damaged file, unchanged');
      assert.notEqual(await sha256(node1File), damagedSha, 'node1 has a new file');

      assert.deepEqual(
        node1Processes().map((p) => p.pid),
        [node1Process.pid],
        'node1 was never restarted',
      );
      assert.doesNotMatch(current.output, /node1 (exited|did not start)/);
      assert.ok(current.running, 'start is still running');
      await stopCleanly('SIGTERM');
    },
  );
});
