/** The node API: one handler per route, each turning a request into a store operation. */
import type { IncomingMessage } from 'node:http';
import { HttpError, parseInput, readJsonBody } from './http';
import type { Logger } from './log';
import { InvalidPathError, resolveSnapshotPath } from './paths';
import {
  AppendRequestSchema,
  EventsQuerySchema,
  MaintenanceRequestSchema,
  SnapshotRequestSchema,
  StatsQuerySchema,
} from './schemas';
import { DatabaseMissingError, type EventStore, LsnAheadError, StaleWalError } from './store';

export interface RouteContext {
  node: string;
  database: string;
  dataDir: string;
  store: EventStore;
  log: Logger;
}

export interface Route {
  method: 'GET' | 'POST';
  path: string;
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
    summary: 'liveness, role, epoch, lsn and row count',
    handle: async (_req, _url, { node, database, store }) => {
      const maintenance = store.maintenance;
      const base = { node, database, ...store.state, lsn: store.lsn, rows: store.rows };
      // 200 in maintenance too: the node is alive and doing what it was asked to.
      return ok(maintenance ? { status: 'maintenance', ...base, ...maintenance } : { status: 'ok', ...base });
    },
  },
  {
    method: 'GET',
    path: '/stats',
    summary: 'file size, write-stall metric and fingerprint (?lsn=N: as of LSN N)',
    handle: async (_req, url, { node, database, store }) => {
      const query = parseInput(StatsQuerySchema, Object.fromEntries(url.searchParams));
      return ok({ node, database, ...(await lsnChecked(store.stats(query.lsn))) });
    },
  },
  {
    method: 'GET',
    path: '/events',
    summary: 'committed events with lsn > afterLsn, whole batches, in (lsn, id) order (?afterLsn=N&limit=M&toLsn=T)',
    handle: async (_req, url, { store }) => {
      const query = parseInput(EventsQuerySchema, Object.fromEntries(url.searchParams));
      const page = await lsnChecked(store.events(query.afterLsn, query.limit, query.toLsn));
      const { fromLsn, lastLsn, headLsn, more } = page;
      const tail = JSON.stringify({ fromLsn, lastLsn, headLsn, more }).slice(1);
      return { status: 200, parts: ['{"events":', page.eventsJson, ',', tail] };
    },
  },
  {
    method: 'POST',
    path: '/events',
    summary: 'append a batch { events: [{ kind, payload }] } in one transaction',
    handle: async (req, _url, { store }) => {
      const body = parseInput(AppendRequestSchema, await readJsonBody(req));
      return ok(await store.append(body.events));
    },
  },
  {
    method: 'POST',
    path: '/snapshot',
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
  return ROUTES.map((r) => `${r.method} ${r.path}: ${r.summary}`);
}
