/**
 * Opening DuckDB files. A second DuckDBInstance on a path that this process already holds opens
 * "fine" and then silently loses committed rows, so every read-write open goes through one
 * process-wide registry that refuses the second open instead of handing out a shared instance
 * (two owners of one file would also assign the same ids and LSNs).
 */
import { realpathSync } from 'node:fs';
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
  /** Closes the instance; connections obtained from it must not be used afterwards. */
  close(): void;
}

const openPaths = new Set<string>();

/** The path with its directory's symlinks resolved, so two spellings of one file collide. */
function canonicalPath(path: string): string {
  const absolute = resolve(path);
  try {
    return join(realpathSync(dirname(absolute)), basename(absolute));
  } catch {
    return absolute;
  }
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
  let closed = false;
  return {
    path: key,
    instance,
    connect: () => instance.connect(),
    close() {
      if (closed) return;
      closed = true;
      instance.closeSync();
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
