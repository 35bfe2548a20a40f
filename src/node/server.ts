/**
 * The reference kimiclaw node: an HTTP service that owns one DuckDB file,
 * <dataDir>/<database>.duckdb. Runs in-process (startNode) or as its own process (main.ts).
 */
import { type IncomingMessage, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { NameSchema, describeZodIssues } from '../config';
import { expireAside } from './aside';
import type { NodeAuth } from './auth';
import { DiskWatcher } from './disk';
import { HttpError, sendJson, sendJsonParts } from './http';
import { type Logger, errorMessage, jsonLogger } from './log';
import { ROUTES, type RouteContext, accessFor, conditionRefusal, routeList } from './routes';
import { Replication } from './replication';
import { ReplicaSpecSchema } from './schemas';
import { Scrubber } from './scrubber';
import { EventStore } from './store';
import { LeaderLease } from './leader-lease';
import { EtcdCenter } from '../config-center/etcd';

const MIB = 1024 * 1024;
const DAY_MS = 86_400_000;

const NodeOptionsSchema = z.object({
  id: NameSchema,
  dataDir: z.string().min(1, 'must be a directory path'),
  database: NameSchema.default('kimiclaw'),
  /** 0 picks a free port. */
  port: z.number().int().min(0).max(65535).default(0),
  host: z.string().min(1).default('127.0.0.1'),
  /** How long stop() lets in-flight requests finish before closing connections. */
  drainTimeoutMs: z.number().int().min(0).default(30_000),
  /** The role of a database file no node has run on yet; afterwards the file's stored role wins. */
  role: z.enum(['primary', 'replica']).default('primary'),
  /** Replicas this node sends to while primary (POST /replication changes them at run time). */
  replicas: z.array(ReplicaSpecSchema).default([]),
  /** How long a write waits for a synchronous replica before it is answered 503 NotReplicated. */
  syncTimeoutMs: z.number().int().min(1).default(30_000),
  heartbeatMs: z.number().int().min(10).default(200),
  /** A replica further behind than this many LSNs gets a snapshot instead of the log. */
  bootstrapLagLsn: z.number().int().min(1).default(100_000),
  /**
   * No database at the path: create it in this role (a new cluster, asserted by whoever starts the
   * node), or, when not given, wait empty for POST /initialize or a replication snapshot.
   */
  init: z.enum(['primary', 'replica']).optional(),
  /** Between the end of one scrub pass and the start of the next; 0 turns the scrub off. */
  scrubIntervalMs: z.number().int().min(0).default(60_000),
  /** The scrub's read budget; 0 is unlimited. */
  scrubBudgetBytesPerSecond: z
    .number()
    .int()
    .min(0)
    .default(64 * MIB),
  /** Free space below this is reported as low (default: the smaller of 256 MiB and 5 %). */
  minFreeBytes: z.number().int().min(0).optional(),
  /** How long moved-aside files are kept before the node removes them. */
  asideRetentionMs: z
    .number()
    .int()
    .min(0)
    .default(7 * DAY_MS),
  /** How often an unwritable node tries to reopen its database. */
  reopenIntervalMs: z.number().int().min(10).default(2_000),
  /**
   * The leadership lease (leader-lease.ts): renewed in etcd at these endpoints under `key`
   * (default /services/<database>/leader); absent: the node acknowledges without one.
   */
  leaderLease: z
    .object({
      endpoints: z.array(z.url()).min(1),
      ttlMs: z.number().int().min(300),
      key: z.string().min(1).optional(),
    })
    .optional(),
});

/** `auth` is required: whether a node runs open is decided by whoever starts it, not by a default. */
export type NodeOptions = z.input<typeof NodeOptionsSchema> & { log?: Logger; auth: NodeAuth };

export interface RunningNode {
  id: string;
  url: string;
  databasePath: string;
  /** Stops accepting, lets in-flight requests finish, checkpoints and closes the file. */
  stop(): Promise<void>;
}

export async function startNode(options: NodeOptions): Promise<RunningNode> {
  const parsed = NodeOptionsSchema.safeParse(options);
  if (!parsed.success) throw new Error(`invalid node options: ${describeZodIssues(parsed.error).join('; ')}`);
  const opts = parsed.data;
  const dataDir = resolve(opts.dataDir);
  const databasePath = join(dataDir, `${opts.database}.duckdb`);
  const log = options.log ?? jsonLogger({ node: opts.id });

  const store = await EventStore.open(databasePath, log, {
    role: opts.init ?? opts.role,
    ifMissing: opts.init ? 'create' : 'wait',
    reopenIntervalMs: opts.reopenIntervalMs,
  });
  const { auth } = options;
  const replication = new Replication(store, { id: opts.id, url: '' }, log, {
    syncTimeoutMs: opts.syncTimeoutMs,
    heartbeatMs: opts.heartbeatMs,
    bootstrapLagLsn: opts.bootstrapLagLsn,
    authorization: () => auth.authorizationHeader(),
  });
  let lease: LeaderLease | undefined;
  if (opts.leaderLease) {
    const { endpoints, ttlMs } = opts.leaderLease;
    lease = new LeaderLease(
      {
        center: new EtcdCenter({ endpoints, timeoutMs: Math.max(100, Math.min(1_000, Math.floor(ttlMs / 6))) }),
        key: opts.leaderLease.key ?? `/services/${opts.database}/leader`,
        self: opts.id,
        ttlMs,
      },
      () => store.state,
      () => replication.replicaAnswerAges(),
      () => replication.settle(),
      log,
    );
    replication.leaseGate = () => lease!.open();
    replication.onPromoted = () => void lease!.renew();
  }
  const disk = new DiskWatcher(dataDir, { minFreeBytes: opts.minFreeBytes, log });
  await disk.start();
  const scrubber =
    opts.scrubIntervalMs > 0
      ? new Scrubber(store.scrubSubject(), {
          intervalMs: opts.scrubIntervalMs,
          bytesPerSecond: opts.scrubBudgetBytesPerSecond,
          log,
          onDamage: (reason) => store.scrubFoundDamage(reason),
        })
      : undefined;
  // Moved-aside files are kept for asideRetentionMs, then removed (aside.ts).
  const sweepAside = (): void => {
    expireAside(databasePath, opts.asideRetentionMs).then(
      (removed) => removed.length > 0 && log('aside_expired', { removed, retentionMs: opts.asideRetentionMs }),
      (err: unknown) => log('aside_expiry_failed', { error: errorMessage(err) }),
    );
  };
  sweepAside();
  const sweeper = setInterval(sweepAside, Math.min(3_600_000, Math.max(1_000, opts.asideRetentionMs / 10)));
  sweeper.unref();
  const ctx: RouteContext = {
    node: opts.id,
    database: opts.database,
    dataDir,
    store,
    replication,
    auth,
    log,
    disk: () => disk.refresh(),
    scrub: () => scrubber?.status(),
    asideRetentionMs: opts.asideRetentionMs,
    startupReplicas: opts.replicas,
    lease: () => lease?.view(),
  };
  let stopping = false;
  let inFlight = 0;

  const server = createServer((req, res) => {
    inFlight++;
    res.on('close', () => inFlight--);
    if (stopping) {
      res.setHeader('connection', 'close');
      sendJson(res, 503, new HttpError(503, 'NodeStopping', `node ${opts.id} is stopping`).toBody());
      return;
    }
    void handle(req, res, ctx);
  });
  // Keep-alive sockets would otherwise hold stop() open until their idle timeout.
  server.keepAliveTimeout = 5_000;

  try {
    await new Promise<void>((resolveListen, reject) => {
      server.once('error', reject);
      server.listen(opts.port, opts.host, () => {
        server.off('error', reject);
        resolveListen();
      });
    });
  } catch (err) {
    disk.stop();
    clearInterval(sweeper);
    await store.close();
    throw err;
  }
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  replication.self.url = url;
  replication.configure(opts.replicas);
  scrubber?.start();
  lease?.start();
  const condition = store.condition.current;
  log('started', {
    url,
    database: opts.database,
    path: databasePath,
    status: condition.status,
    ...('damage' in condition ? { damage: condition.damage } : {}),
    lsn: store.lsn,
    rows: store.rows,
    role: store.state.role,
    epoch: store.state.epoch,
    auth: auth.mode,
    ...(auth.mode === 'bearer' ? { tokens: auth.counts } : {}),
  });
  if (auth.mode === 'none') {
    log('auth_disabled', {
      warning:
        'THIS NODE ACCEPTS EVERY CALLER: anyone who can reach it can write, demote, fence or replace its database. ' +
        'Development only; give it --token-file or KIMICLAW_NODE_TOKENS.',
    });
  }

  let stopped: Promise<void> | undefined;
  const stop = async (): Promise<void> => {
    stopping = true;
    const closed = new Promise<void>((r) => server.close(() => r()));
    server.closeIdleConnections();
    const deadline = Date.now() + opts.drainTimeoutMs;
    while (inFlight > 0 && Date.now() < deadline) await sleep(20);
    if (inFlight > 0) log('drain_timeout', { inFlight });
    server.closeAllConnections();
    lease?.stop();
    replication.stop();
    disk.stop();
    clearInterval(sweeper);
    await scrubber?.stop();
    await closed;
    await store.close();
    log('stopped', { lsn: store.lsn, rows: store.rows });
  };
  return {
    id: opts.id,
    url,
    databasePath,
    stop: () => (stopped ??= stop()),
  };
}

const EXPECTED_REFUSALS = new Set(['Maintenance', 'Damaged', 'Unwritable', 'Empty']);

async function handle(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://node.invalid');
  try {
    // Before anything else, the body included: a refused request changes nothing.
    ctx.auth.authorize(req.headers, accessFor(url.pathname), `${req.method} ${url.pathname}`);
    const candidates = ROUTES.filter((r) => r.path === url.pathname);
    const route = candidates.find((r) => r.method === req.method);
    if (!route && candidates.length > 0) {
      const allowed = candidates.map((r) => r.method).join(', ');
      res.setHeader('allow', allowed);
      throw new HttpError(405, 'MethodNotAllowed', `${url.pathname} accepts ${allowed}, not ${req.method}`);
    }
    if (!route) {
      const names = ROUTES.map((r) => `${r.method} ${r.path}`).join(', ');
      const message = `no route ${req.method} ${url.pathname}; the routes are ${names}`;
      throw new HttpError(404, 'NotFound', message, undefined, { routes: routeList() });
    }
    const result = await route.handle(req, url, ctx);
    if ('parts' in result) sendJsonParts(res, result.status, result.parts);
    else sendJson(res, result.status, result.body);
  } catch (err) {
    const httpError =
      err instanceof HttpError
        ? err
        : (conditionRefusal(err, ctx.node) ?? new HttpError(500, 'Internal', errorMessage(err)));
    // Refusals of a node in maintenance, damaged, unwritable or empty are expected, and said once
    // in the log when the state begins, not once per request.
    if (httpError.status >= 500 && !EXPECTED_REFUSALS.has(httpError.code)) {
      ctx.log('request_failed', { method: req.method, path: url.pathname, error: httpError.message });
    }
    if (httpError.status === 401 || httpError.status === 403) {
      // Who knocked with what kind of refusal; the message never holds the credential.
      ctx.log('request_refused', {
        method: req.method,
        path: url.pathname,
        status: httpError.status,
        from: req.socket.remoteAddress,
        error: httpError.message,
      });
      if (httpError.status === 401) res.setHeader('www-authenticate', 'Bearer realm="kimiclaw"');
    }
    // The body may not have been read (e.g. 404 on a POST); closing avoids reusing a dirty socket.
    if (!req.complete) res.setHeader('connection', 'close');
    if (!res.headersSent) sendJson(res, httpError.status, httpError.toBody());
    else res.destroy();
  }
}
