/** The node API: one handler per route, each turning a request into a store operation. */
import type { IncomingMessage } from 'node:http';
import type { Access, NodeAuth } from './auth';
import { HttpError, parseInput, readJsonBody } from './http';
import type { Logger } from './log';
import { InvalidPathError, resolveSnapshotPath } from './paths';
import { NotReplicatedError, type Replication, SNAPSHOT_HEADER, StaleEpochError } from './replication';
import {
  AppendRequestSchema,
  DemoteRequestSchema,
  EventsQuerySchema,
  MaintenanceRequestSchema,
  PromoteRequestSchema,
  ReplicateRequestSchema,
  ReplicationRequestSchema,
  SnapshotMetaSchema,
  SnapshotRequestSchema,
  StatsQuerySchema,
} from './schemas';
import {
  DatabaseMissingError,
  type EventStore,
  LsnAheadError,
  NotPrimaryError,
  ReplicationGapError,
  StaleWalError,
} from './store';

export interface RouteContext {
  node: string;
  database: string;
  dataDir: string;
  store: EventStore;
  replication: Replication;
  auth: NodeAuth;
  log: Logger;
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
    summary: 'liveness, role, epoch, lsn, row count and replication (replicas and their lag, or the primary)',
    handle: async (_req, _url, { node, database, store, replication, auth }) => {
      const maintenance = store.maintenance;
      const base = { node, database, ...replication.status(), rows: store.rows, auth: auth.mode };
      // 200 in maintenance too: the node is alive and doing what it was asked to.
      return ok(maintenance ? { status: 'maintenance', ...base, ...maintenance } : { status: 'ok', ...base });
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
      'primary → replica far behind: the body is a consistent copy of the primary database (header x-kimiclaw-snapshot)',
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
    summary: 'on the primary: set { epoch, replicas?, allowDegraded? }',
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
      if (body.allowDegraded !== undefined) replication.allowDegraded = body.allowDegraded;
      if (body.replicas) replication.configure(body.replicas);
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
      return ok(
        await replicationChecked(replication, replication.promote(body.epoch, body.replicas, body.allowDegraded)),
      );
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
    handle: async (req, _url, { dataDir, store }) => {
      const body = parseInput(SnapshotRequestSchema, await readJsonBody(req));
      let target: string;
      try {
        target = await resolveSnapshotPath(dataDir, body.path, [store.path, `${store.path}.wal`]);
      } catch (err) {
        if (err instanceof InvalidPathError) throw new HttpError(400, 'InvalidPath', err.message, err.field);
        throw err;
      }
      return ok(await store.snapshot(target));
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
];

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
