/** The node API: one handler per route, each turning a request into a store operation. */
import type { IncomingMessage } from 'node:http';
import { HttpError, parseInput, readJsonBody } from './http';
import type { Logger } from './log';
import { InvalidPathError, resolveSnapshotPath } from './paths';
import { AppendRequestSchema, SnapshotRequestSchema, StatsQuerySchema } from './schemas';
import { type EventStore, LsnAheadError } from './store';

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
  handle(req: IncomingMessage, url: URL, ctx: RouteContext): Promise<{ status: number; body: unknown }>;
}

const ok = (body: unknown): { status: number; body: unknown } => ({ status: 200, body });

export const ROUTES: readonly Route[] = [
  {
    method: 'GET',
    path: '/health',
    summary: 'liveness, role, epoch, lsn and row count',
    handle: async (_req, _url, { node, database, store }) =>
      ok({ status: 'ok', node, database, ...store.state, lsn: store.lsn, rows: store.rows }),
  },
  {
    method: 'GET',
    path: '/stats',
    summary: 'file size, write-stall metric and fingerprint (?lsn=N: as of LSN N)',
    handle: async (_req, url, { node, database, store }) => {
      const query = parseInput(StatsQuerySchema, Object.fromEntries(url.searchParams));
      try {
        return ok({ node, database, ...(await store.stats(query.lsn)) });
      } catch (err) {
        if (err instanceof LsnAheadError) throw new HttpError(409, 'LsnAhead', err.message, 'lsn');
        throw err;
      }
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
];

export function routeList(): string[] {
  return ROUTES.map((r) => `${r.method} ${r.path}: ${r.summary}`);
}
