/**
 * Opening DuckDB files. A second DuckDBInstance on a path that this process already holds opens
 * "fine" and then silently loses committed rows, so every read-write open goes through one
 * process-wide registry that refuses the second open instead of handing out a shared instance
 * (two owners of one file would also assign the same ids and LSNs).
 *
 * Closing must be complete before the path may be opened again: measured on DuckDB 1.5.6,
 * `DuckDBInstance.closeSync()` leaves the database (its file and WAL descriptors, its buffers)
 * alive for as long as any connection made from it is still open. An instance that lingers that
 * way and a new one on the same path are exactly the two-instance case above, and the old one may
 * later checkpoint into a file that was put in its place. So an OpenDatabase tracks the
 * connections it handed out, closes any left open, and keeps the path registered (refusing a new
 * open) unless the process provably holds no descriptor on the file or its WAL any more.
 */
import { readdirSync, readlinkSync, realpathSync } from 'node:fs';
import { dirname, basename, join, resolve } from 'node:path';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';

/**
 * Options every instance gets: no extension may be fetched or loaded behind our back (there is no
 * network, and an extension appearing mid-restore is not something to debug at 3 a.m.).
 */
export const SAFE_OPTIONS: Readonly<Record<string, string>> = {
  autoinstall_known_extensions: 'false',
  autoload_known_extensions: 'false',
};

export interface OpenDatabase {
  readonly path: string;
  readonly instance: DuckDBInstance;
  /** A fresh connection; callers close it (connections are cheap, a shared one serializes). */
  connect(): Promise<DuckDBConnection>;
  /**
   * Closes every connection still open from this instance (none may be running a query), then
   * the instance, and checks that the file and its WAL are no longer open in this process. Throws
   * DatabaseStillOpenError otherwise; the path then stays registered, so it cannot be opened
   * again. Safe to call twice.
   */
  close(): void;
}

export class DatabaseStillOpenError extends Error {
  constructor(
    readonly path: string,
    readonly descriptors: string[],
  ) {
    super(
      `${path} is still open in this process after closing its DuckDB instance ` +
        `(${descriptors.join(', ')}); it will not be opened again by this process`,
    );
    this.name = 'DatabaseStillOpenError';
  }
}

const openPaths = new Set<string>();

/** The path with its directory's symlinks resolved, so two spellings of one file collide. */
export function canonicalPath(path: string): string {
  const absolute = resolve(path);
  try {
    return join(realpathSync(dirname(absolute)), basename(absolute));
  } catch {
    return absolute;
  }
}

/** Whether this process has path open read-write through openDatabase. */
export function isOpenInProcess(path: string): boolean {
  return openPaths.has(canonicalPath(path));
}

/**
 * File descriptors of this process on the database file or its WAL, as "fd N -> target"
 * (Linux /proc/self/fd; elsewhere the check cannot be made and nothing is reported).
 */
export function descriptorsOn(databasePath: string): string[] {
  const targets = new Set([databasePath, `${databasePath}.wal`]);
  let fds: string[];
  try {
    fds = readdirSync('/proc/self/fd');
  } catch {
    return [];
  }
  const found: string[] = [];
  for (const fd of fds) {
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue; // closed meanwhile (e.g. the descriptor readdir itself used)
    }
    if (targets.has(target.replace(/ \(deleted\)$/, ''))) found.push(`fd ${fd} -> ${target}`);
  }
  return found;
}

/** Opens a database file read-write; throws if this process already has it open. */
export async function openDatabase(path: string): Promise<OpenDatabase> {
  const key = canonicalPath(path);
  if (openPaths.has(key)) {
    throw new Error(`${key} is already open in this process; a second instance would lose rows`);
  }
  openPaths.add(key);
  let instance: DuckDBInstance;
  try {
    instance = await DuckDBInstance.create(key, { ...SAFE_OPTIONS });
  } catch (err) {
    openPaths.delete(key);
    throw err;
  }
  const connections = new Set<DuckDBConnection>();
  let closed = false;
  return {
    path: key,
    instance,
    async connect() {
      if (closed) throw new Error(`${key} is closed`);
      const connection = await instance.connect();
      connections.add(connection);
      // Forget it when the caller closes it; closing twice is harmless in node-api.
      const disconnect = connection.disconnectSync.bind(connection);
      connection.disconnectSync = () => {
        connections.delete(connection);
        disconnect();
      };
      return connection;
    },
    close() {
      if (!closed) {
        closed = true;
        for (const connection of [...connections]) connection.closeSync();
        instance.closeSync();
      }
      if (!openPaths.has(key)) return;
      const left = descriptorsOn(key);
      if (left.length > 0) throw new DatabaseStillOpenError(key, left);
      openPaths.delete(key);
    },
  };
}

/** Runs fn on a fresh connection and always closes it. */
export async function withConnection<T>(db: OpenDatabase, fn: (c: DuckDBConnection) => Promise<T>): Promise<T> {
  const connection = await db.connect();
  try {
    return await fn(connection);
  } finally {
    connection.closeSync();
  }
}
