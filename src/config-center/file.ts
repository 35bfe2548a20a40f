/**
 * The config center in one JSON file, for a single host: `{ "<key>": { "value": …,
 * "revision": "<n>" } }`, where n counts the writes of that key.
 *
 * Readers never lock: every write replaces the whole file by rename, so a reader sees the old
 * file or the new one, never half of one. Writers (compareAndSwap) hold an exclusive lock file
 * (created with O_EXCL) while they read, compare and write, so two processes cannot both swap
 * from the same revision. A lock left by a writer that crashed is broken after 10 s; a write
 * holds it for milliseconds. Watches poll: fs.watch misses renames on some file systems and
 * fires twice on others.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import {
  ConfigCenterUnavailable,
  checkRevision,
  encodeValue,
  type CasResult,
  type ConfigCenter,
  type Versioned,
} from './center';

export interface FileCenterOptions {
  path: string;
  /** How often watches read the file. Default 200 ms. */
  pollMs?: number;
  /** How long compareAndSwap waits for the lock before giving up (retryably). Default 15 s. */
  lockTimeoutMs?: number;
}

interface StoredEntry {
  value: unknown;
  revision: string;
}

type StoredFile = Record<string, StoredEntry>;

/** Older than this, a lock file belongs to a writer that died. */
const STALE_LOCK_MS = 10_000;
const LOCK_RETRY_MS = 10;

export class FileCenter implements ConfigCenter {
  readonly describe: string;
  readonly path: string;
  private readonly lockPath: string;
  private readonly pollMs: number;
  private readonly lockTimeoutMs: number;
  private readonly watches = new Set<() => void>();
  private closed = false;

  constructor(options: FileCenterOptions) {
    this.path = resolve(options.path);
    this.lockPath = `${this.path}.lock`;
    this.pollMs = options.pollMs ?? 200;
    this.lockTimeoutMs = options.lockTimeoutMs ?? 15_000;
    this.describe = `file ${this.path}`;
  }

  async get(key: string): Promise<Versioned<unknown>> {
    this.checkOpen();
    return versionOf((await this.readAll())[key]);
  }

  async compareAndSwap(key: string, expectedRevision: string, value: unknown): Promise<CasResult> {
    this.checkOpen();
    const expected = checkRevision(expectedRevision);
    // Validate before locking: a value JSON cannot carry must not cost anyone a lock wait.
    encodeValue(key, value);
    return this.withLock(async () => {
      const all = await this.readAll();
      const current = versionOf(all[key]);
      if (BigInt(current.revision) !== expected) return { ok: false, current };
      const revision = (expected + 1n).toString();
      all[key] = { value, revision };
      await this.writeAll(all);
      return { ok: true, revision };
    });
  }

  /** Polls the file; reads are sequential, so each sees the file at least as new as the last. */
  watch(key: string, onChange: (v: Versioned<unknown>) => void): () => void {
    this.checkOpen();
    let stopped = false;
    let delivered: string | undefined;
    let timer: NodeJS.Timeout | undefined;
    const poll = async (): Promise<void> => {
      try {
        const current = await this.get(key);
        if (!stopped && current.revision !== delivered) {
          delivered = current.revision;
          onChange(current);
        }
      } catch (err) {
        // A file being replaced by hand, or unreadable for a moment: try again next tick.
        if (!(err instanceof ConfigCenterUnavailable)) {
          process.emitWarning(`config center watch on ${key} in ${this.path}: ${String(err)}`);
        }
      }
      if (!stopped) timer = setTimeout(() => void poll(), this.pollMs);
    };
    const stop = (): void => {
      stopped = true;
      clearTimeout(timer);
      this.watches.delete(stop);
    };
    this.watches.add(stop);
    void poll();
    return stop;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const stop of [...this.watches]) stop();
  }

  private checkOpen(): void {
    if (this.closed) throw new Error(`${this.describe}: used after close()`);
  }

  private async readAll(): Promise<StoredFile> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return Object.create(null) as StoredFile;
      throw err;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new Error(`${this.describe} is not valid JSON (${(err as Error).message})`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new Error(`${this.describe} must hold a JSON object of keys`);
    }
    for (const [key, entry] of Object.entries(parsed)) {
      const revision = (entry as Partial<StoredEntry> | null)?.revision;
      if (typeof revision !== 'string' || !/^[1-9]\d*$/.test(revision)) {
        throw new Error(`${this.describe}: key ${key} must be {"value": …, "revision": "<n>"} with n ≥ 1`);
      }
    }
    // Without a prototype, a key such as "constructor" or "__proto__" is just a key.
    return Object.assign(Object.create(null) as StoredFile, parsed);
  }

  /** Temp file, fsync, rename, fsync the directory: after a crash the file is old or new. */
  private async writeAll(all: StoredFile): Promise<void> {
    const temp = `${this.path}.tmp-${process.pid}-${randomUUID()}`;
    try {
      const handle = await open(temp, 'wx', 0o644);
      try {
        await handle.writeFile(`${JSON.stringify(all, null, 2)}\n`);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temp, this.path);
    } catch (err) {
      await rm(temp, { force: true });
      throw err;
    }
    const dir = await open(dirname(this.path), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }

  private async withLock<T>(work: () => Promise<T>): Promise<T> {
    await mkdir(dirname(this.path), { recursive: true });
    const deadline = Date.now() + this.lockTimeoutMs;
    for (;;) {
      try {
        const handle = await open(this.lockPath, 'wx');
        try {
          await handle.writeFile(JSON.stringify({ pid: process.pid, since: new Date().toISOString() }));
        } finally {
          await handle.close();
        }
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      if (await this.breakStaleLock()) continue;
      if (Date.now() > deadline) {
        throw new ConfigCenterUnavailable(
          `${this.describe}: another writer has held ${this.lockPath} for over ${this.lockTimeoutMs} ms`,
        );
      }
      // Jitter: writers that collided should not wake up together again.
      await new Promise((r) => setTimeout(r, LOCK_RETRY_MS + Math.random() * LOCK_RETRY_MS));
    }
    try {
      return await work();
    } finally {
      await rm(this.lockPath, { force: true });
    }
  }

  /** Removes the lock file if its writer must be dead; true when it did. */
  private async breakStaleLock(): Promise<boolean> {
    const since = (await stat(this.lockPath).catch(() => undefined))?.mtimeMs;
    if (since === undefined) return true; // released meanwhile: try again at once
    if (Date.now() - since < STALE_LOCK_MS) return false;
    await rm(this.lockPath, { force: true });
    return true;
  }
}

function versionOf(entry: StoredEntry | undefined): Versioned<unknown> {
  return entry ? { value: entry.value, revision: entry.revision } : { value: undefined, revision: '0' };
}
