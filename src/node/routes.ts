/** The node API: one handler per route, each turning a request into a store operation. */
import { epochOfLsn } from '../restore/segments';
import type { IncomingMessage } from 'node:http';
import { listAside } from './aside';
import type { Access, NodeAuth } from './auth';
import { DamagedError, EmptyError, NotEmptyError, UnwritableError } from './condition';
import type { DiskStatus } from './disk';
import { HttpError, parseInput, readJsonBody } from './http';
import type { LeaseView } from './leader-lease';
import type { Logger } from './log';
import { InvalidPathError, resolveSnapshotPath } from './paths';
import {
  NotReplicatedError,
  type Replication,
  type ReplicaSpec,
  SNAPSHOT_HEADER,
  StaleEpochError,
} from './replication';
import {
  AppendRequestSchema,
  DemoteRequestSchema,
  EventsQuerySchema,
  InitializeRequestSchema,
  MaintenanceRequestSchema,
  PromoteRequestSchema,
  ReplicateRequestSchema,
  ReplicationRequestSchema,
  SnapshotMetaSchema,
  SnapshotRequestSchema,
  StatsQuerySchema,
} from './schemas';
import type { ScrubStatus } from './scrubber';
import type { EventStore } from './store';
import {
  DatabaseMissingError,
  LsnAheadError,
  MaintenanceError,
  NotPrimaryError,
  ReplicationGapError,
  StaleWalError,
  StoreClosedError,
} from './store-errors';

export interface RouteContext {
  node: string;
  database: string;
  dataDir: string;
  store: EventStore;
  replication: Replication;
  auth: NodeAuth;
  log: Logger;
  /** Free space of the data directory's file system, measured now (undefined if statfs fails). */
  disk: () => Promise<DiskStatus | undefined>;
  /** The scrub's last pass; undefined when the scrub is off. */
  scrub: () => ScrubStatus | undefined;
  /** How long moved-aside files are kept. */
  asideRetentionMs: number;
  /** The replicas given at start: a node initialized as primary replicates to them. */
  startupReplicas: readonly ReplicaSpec[];
  /** The leadership lease, when the node runs with one. */
  lease: () => LeaseView | undefined;
}

/** The header a client sets to the epoch it read from the config center. */
export const EPOCH_HEADER = 'x-kimiclaw-epoch';

export interface Route {
  method: 'GET' | 'POST';
  path: string;
  /** The credential it needs (docs/node-api.md, "Authentication"). */
  access: Access;
  summary: string;
  handle(req: IncomingMessage, url: URL, ctx: RouteContext): Promise<RouteResult>;
}

/** A JSON body as a value, or as pieces of ready JSON text (sent as they are). */
export type RouteResult = { status: number; body: unknown } | { status: number; parts: Array<string | Uint8Array> };

const ok = (body: unknown): RouteResult => ({ status: 200, body });

export const ROUTES: readonly Route[] = [
  {
    method: 'GET',
    path: '/health',
    access: 'open',
    summary:
      'liveness, status (ok, maintenance, damaged, unwritable, empty), role, epoch, lsn, acknowledged LSN, disk, scrub and replication',
    handle: async (_req, _url, { node, database, store, replication, auth, disk, scrub, lease }) => {
      const maintenance = store.maintenance;
      const leaderLease = lease();
      const condition = store.condition.current;
      const diskStatus = await disk();
      const scrubStatus = scrub();
      // 200 in every state: the node is alive and says what it can do; only a dead one is silent.
      return ok({
        status: maintenance ? 'maintenance' : condition.status,
        writable: store.writable,
        ...('damage' in condition ? { damage: condition.damage } : {}),
        node,
        database,
        ...replication.status(),
        ackedLsn: replication.acknowledgedLsn,
        rows: store.rows,
        auth: auth.mode,
        ...(diskStatus ? { disk: diskStatus } : {}),
        ...(scrubStatus ? { scrub: scrubStatus } : {}),
        ...(leaderLease ? { leaderLease } : {}),
        ...maintenance,
      });
    },
  },
  {
    method: 'GET',
    path: '/stats',
    access: 'events',
    summary: 'file size, write-stall metric and fingerprint (?lsn=N: as of LSN N)',
    handle: async (_req, url, { node, database, store }) => {
      const query = parseInput(StatsQuerySchema, Object.fromEntries(url.searchParams));
      return ok({ node, database, ...(await lsnChecked(store.stats(query.lsn))) });
    },
  },
  {
    method: 'GET',
    path: '/events',
    access: 'events',
    summary: 'acknowledged events with lsn > afterLsn, whole batches, in (lsn, id) order (?afterLsn=N&limit=M&toLsn=T)',
    handle: async (_req, url, { store, replication }) => {
      const query = parseInput(EventsQuerySchema, Object.fromEntries(url.searchParams));
      // Only acknowledged batches: one committed but not yet on a synchronous replica may be
      // discarded by a failover, and must not reach the log archive.
      const acked = replication.acknowledgedLsn;
      const toLsn = Math.max(query.afterLsn, Math.min(query.toLsn ?? acked, acked));
      const page = await lsnChecked(store.events(query.afterLsn, query.limit, toLsn));
      const { fromLsn, lastLsn, headLsn, more } = page;
      const tail = JSON.stringify({ fromLsn, lastLsn, headLsn, more }).slice(1);
      return { status: 200, parts: ['{"events":', page.eventsJson, ',', tail] };
    },
  },
  {
    method: 'POST',
    path: '/events',
    access: 'events',
    summary: 'append a batch { events: [{ kind, payload }] } in one transaction; answered once replicated',
    handle: async (req, _url, { replication }) => {
      const body = parseInput(AppendRequestSchema, await readJsonBody(req));
      const header = req.headers[EPOCH_HEADER];
      const epoch = typeof header === 'string' && header !== '' ? Number(header) : undefined;
      if (epoch !== undefined && !(Number.isSafeInteger(epoch) && epoch >= 1)) {
        throw new HttpError(400, 'InvalidRequest', `${EPOCH_HEADER}: must be a positive integer epoch`, EPOCH_HEADER);
      }
      return ok(await replicationChecked(replication, replication.append(body.events, epoch)));
    },
  },
  {
    method: 'POST',
    path: '/replicate',
    access: 'control',
    summary: 'primary → replica: apply { epoch, primary, history, events } (an empty list is a heartbeat)',
    handle: async (req, _url, { replication }) => {
      const body = parseInput(ReplicateRequestSchema, await readJsonBody(req));
      return ok(await replicationChecked(replication, replication.receive(body)));
    },
  },
  {
    method: 'POST',
    path: '/replication/snapshot',
    access: 'control',
    summary:
      'primary → replica far behind, damaged or empty: the body is a consistent copy of the primary database (header x-kimiclaw-snapshot); the file it replaces moves aside',
    handle: async (req, _url, { replication }) => {
      const header = req.headers[SNAPSHOT_HEADER];
      let meta: unknown;
      try {
        meta = JSON.parse(typeof header === 'string' ? header : '');
      } catch {
        throw new HttpError(400, 'InvalidRequest', `${SNAPSHOT_HEADER}: must be JSON`, SNAPSHOT_HEADER);
      }
      const parsed = parseInput(SnapshotMetaSchema, meta);
      return ok(await replicationChecked(replication, replication.receiveSnapshot(req, parsed)));
    },
  },
  {
    method: 'GET',
    path: '/replication',
    access: 'control',
    summary: 'role, epoch, epoch history, replicas with their applied LSN and lag, or the primary last heard from',
    handle: async (_req, _url, { replication }) => ok(replication.status()),
  },
  {
    method: 'POST',
    path: '/replication',
    access: 'control',
    summary: 'on the primary: set { epoch, replicas?, allowDegraded?, bootstrap? (replicas to send a snapshot next) }',
    handle: async (req, _url, { replication }) => {
      const body = parseInput(ReplicationRequestSchema, await readJsonBody(req));
      const state = replication.state;
      if (state.role !== 'primary' || body.epoch !== state.epoch) {
        throw new HttpError(
          409,
          state.role !== 'primary' ? 'NotPrimary' : 'StaleEpoch',
          `this node is ${state.role} of epoch ${state.epoch}; replication is set on the primary of the epoch given`,
          'epoch',
          { role: state.role, epoch: state.epoch },
        );
      }
      if (body.bootstrap) {
        const known = new Set([...(body.replicas ?? replication.replicas).map((r) => r.id)]);
        const unknown = body.bootstrap.filter((id) => !known.has(id));
        if (unknown.length > 0) {
          throw new HttpError(
            400,
            'InvalidRequest',
            `bootstrap: ${unknown.join(', ')} is not a replica of this primary (replicas: ${[...known].join(', ') || 'none'})`,
            'bootstrap',
          );
        }
      }
      if (body.allowDegraded !== undefined) replication.allowDegraded = body.allowDegraded;
      if (body.replicas) replication.configure(body.replicas);
      if (body.bootstrap) replication.requestBootstrap(body.bootstrap);
      replication.settle();
      return ok(replication.status());
    },
  },
  {
    method: 'POST',
    path: '/promote',
    access: 'control',
    summary: "become primary of { epoch } (newer than this node's), replicating to { replicas }",
    handle: async (req, _url, { replication }) => {
      const body = parseInput(PromoteRequestSchema, await readJsonBody(req));
      try {
        return ok(
          await replicationChecked(
            replication,
            replication.promote(body.epoch, body.replicas, body.allowDegraded, body.startLsn),
          ),
        );
      } catch (err) {
        if (err instanceof RangeError) throw new HttpError(400, 'InvalidRequest', err.message, 'startLsn');
        throw err;
      }
    },
  },
  {
    method: 'POST',
    path: '/demote',
    access: 'control',
    summary: 'step down at { epoch }: replica of { primary }, or fenced; a primary drains for up to drainMs first',
    handle: async (req, _url, { replication }) => {
      const body = parseInput(DemoteRequestSchema, await readJsonBody(req));
      return ok(await replicationChecked(replication, replication.demote(body.epoch, body.primary, body.drainMs)));
    },
  },
  {
    method: 'POST',
    path: '/snapshot',
    access: 'control',
    summary: 'write a consistent copy of the database to { path } inside the data directory',
    handle: async (req, _url, { node, dataDir, store }) => {
      const body = parseInput(SnapshotRequestSchema, await readJsonBody(req));
      let target: string;
      try {
        target = await resolveSnapshotPath(dataDir, body.path, [store.path, `${store.path}.wal`]);
      } catch (err) {
        if (err instanceof InvalidPathError) throw new HttpError(400, 'InvalidPath', err.message, err.field);
        throw err;
      }
      try {
        const snapshot = await store.snapshot(target);
        // The epoch of the history the snapshot's LSN belongs to: a backup's manifest names it.
        return ok({ ...snapshot, epoch: epochOfLsn(store.state.history, snapshot.lsn) });
      } catch (err) {
        // A fact about the file, not a passing state: a backup must fail at once, not retry.
        const refused =
          err instanceof DamagedError || err instanceof EmptyError ? conditionRefusal(err, node) : undefined;
        if (refused) throw new HttpError(409, refused.code, refused.message, undefined, refused.details);
        throw err;
      }
    },
  },
  {
    method: 'POST',
    path: '/maintenance',
    access: 'control',
    summary:
      'close the database file for a restore { enabled: true, reason? }, or reopen it { enabled: false, allowEmpty? }',
    handle: async (req, _url, { store }) => {
      const body = parseInput(MaintenanceRequestSchema, await readJsonBody(req));
      if (body.enabled) return ok(await store.enterMaintenance(body.reason));
      try {
        return ok(await store.exitMaintenance({ allowEmpty: body.allowEmpty ?? false }));
      } catch (err) {
        if (err instanceof DatabaseMissingError) {
          throw new HttpError(409, 'DatabaseMissing', err.message, 'allowEmpty', { path: err.path });
        }
        if (err instanceof StaleWalError)
          throw new HttpError(409, 'StaleWal', err.message, undefined, { path: err.path });
        throw err;
      }
    },
  },
  {
    method: 'POST',
    path: '/initialize',
    access: 'control',
    summary: 'an empty node: create its database as { role: primary | replica, epoch }; 409 NotEmpty otherwise',
    handle: async (req, _url, { store, replication, startupReplicas }) => {
      const body = parseInput(InitializeRequestSchema, await readJsonBody(req));
      const result = await store.initialize(body.role, body.epoch);
      if (body.role === 'primary') replication.configure(startupReplicas);
      return ok(result);
    },
  },
  {
    method: 'GET',
    path: '/aside',
    access: 'control',
    summary: 'files moved aside (never deleted) by rebuilds and restores, with their size, reason and expiry',
    handle: async (_req, _url, { store, asideRetentionMs }) =>
      ok({ path: store.path, retentionMs: asideRetentionMs, aside: await listAside(store.path, asideRetentionMs) }),
  },
];

/**
 * The refusal of a node that is stopping, in maintenance, damaged, unwritable or empty, as an
 * HttpError with the code a caller branches on and the details it needs: 503 (whether waiting
 * helps, the code says), 409 NotEmpty. Undefined for any other error.
 */
export function conditionRefusal(err: unknown, node: string): HttpError | undefined {
  if (err instanceof StoreClosedError) return new HttpError(503, 'NodeStopping', err.message);
  if (err instanceof MaintenanceError) {
    return new HttpError(503, 'Maintenance', MaintenanceError.describe(`node ${node}`, err.state), undefined, {
      ...err.state,
    });
  }
  if (err instanceof DamagedError) return new HttpError(503, 'Damaged', err.message, undefined, { damage: err.damage });
  if (err instanceof UnwritableError) {
    return new HttpError(503, 'Unwritable', err.message, undefined, { damage: err.damage });
  }
  if (err instanceof EmptyError) return new HttpError(503, 'Empty', err.message, undefined, { path: err.path });
  if (err instanceof NotEmptyError) return new HttpError(409, 'NotEmpty', err.message, undefined, { path: err.path });
  return undefined;
}

/** Replication and fencing refusals as 409/503 with the details a client needs to act. */
async function replicationChecked<T>(replication: Replication, pending: Promise<T>): Promise<T> {
  try {
    return await pending;
  } catch (err) {
    const { role, epoch } = replication.state;
    const primary = replication.primaryContact && {
      id: replication.primaryContact.id,
      url: replication.primaryContact.url,
    };
    if (err instanceof NotPrimaryError) {
      throw new HttpError(409, role === 'fenced' ? 'Fenced' : 'NotPrimary', err.message, undefined, {
        role,
        epoch,
        ...(primary ? { primary } : {}),
      });
    }
    if (err instanceof StaleEpochError) throw new HttpError(409, 'StaleEpoch', err.message, 'epoch', { role, epoch });
    if (err instanceof ReplicationGapError) {
      throw new HttpError(409, 'ReplicationGap', err.message, 'events', { lsn: err.expectedLsn - 1 });
    }
    if (err instanceof NotReplicatedError)
      throw new HttpError(503, 'NotReplicated', err.message, undefined, { lsn: err.lsn });
    throw err;
  }
}

/** Turns an LSN beyond the node's into 409 LsnAhead naming the field that carried it. */
async function lsnChecked<T>(pending: Promise<T>): Promise<T> {
  try {
    return await pending;
  } catch (err) {
    if (err instanceof LsnAheadError) throw new HttpError(409, 'LsnAhead', err.message, err.field);
    throw err;
  }
}

export function routeList(): string[] {
  return ROUTES.map(
    (r) => `${r.method} ${r.path} (${r.access === 'open' ? 'no credential' : `${r.access} credential`}): ${r.summary}`,
  );
}

/**
 * What a request needs before its route is looked at: a known path asks what its routes ask (a
 * wrong method is answered 405 only to a caller allowed there), an unknown one any credential, so
 * the route list of a 404 is not handed to anyone who can connect.
 */
export function accessFor(path: string): Access {
  const levels = ROUTES.filter((r) => r.path === path).map((r) => r.access);
  if (levels.length === 0) return 'events';
  return levels.includes('open') ? 'open' : levels.includes('events') ? 'events' : 'control';
}
