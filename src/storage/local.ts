/**
 * The L1 store: a directory on the node's own disk. Files are written to a temporary name,
 * fsynced and renamed, so a crash leaves either the old state or the new one, never half a file.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, readFile, readdir, rename, rm, rmdir, stat } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { BackupStore, StoredObject } from './store';

export class LocalStore implements BackupStore {
  readonly location: string;

  constructor(private readonly root: string) {
    this.location = resolve(root);
  }

  locate(key: string): string {
    return this.pathOf(key);
  }

  /** Keys come from our own id builders, but a key must never lead outside the root. */
  private pathOf(key: string): string {
    const path = resolve(this.location, key);
    if (path !== this.location && !path.startsWith(this.location + sep)) {
      throw new Error(`key "${key}" resolves outside the L1 directory ${this.location}`);
    }
    return path;
  }

  private async writeAtomically(path: string, write: (tmp: string) => Promise<void>): Promise<void> {
    await mkdir(dirname(path), { recursive: true });
    const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
    try {
      await write(tmp);
      const handle = await open(tmp, 'r+');
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(tmp, path);
      await syncDirectory(dirname(path));
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }

  async putArtifact(key: string, body: Readable): Promise<void> {
    await this.writeAtomically(this.pathOf(key), (tmp) => pipeline(body, createWriteStream(tmp)));
  }

  async openArtifact(key: string): Promise<{ stream: Readable; bytes: number }> {
    const path = this.pathOf(key);
    const info = await stat(path);
    return { stream: createReadStream(path), bytes: info.size };
  }

  async statObject(key: string): Promise<StoredObject | undefined> {
    try {
      const info = await stat(this.pathOf(key));
      return { key, bytes: info.size, lastModified: info.mtime };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async putJson(key: string, value: unknown): Promise<void> {
    const text = `${JSON.stringify(value, null, 2)}\n`;
    await this.writeAtomically(this.pathOf(key), async (tmp) => {
      const handle = await open(tmp, 'w');
      try {
        await handle.writeFile(text, 'utf8');
      } finally {
        await handle.close();
      }
    });
  }

  async getText(key: string): Promise<string | undefined> {
    try {
      return await readFile(this.pathOf(key), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async list(prefix: string): Promise<StoredObject[]> {
    const base = this.pathOf(prefix);
    let entries: string[];
    try {
      entries = await readdir(base, { recursive: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const found: StoredObject[] = [];
    for (const entry of entries) {
      const path = join(base, entry);
      const info = await stat(path).catch(() => undefined);
      if (!info?.isFile() || entry.includes('.tmp-')) continue;
      found.push({
        key: relative(this.location, path).split(sep).join('/'),
        bytes: info.size,
        lastModified: info.mtime,
      });
    }
    return found;
  }

  async deleteKeys(keys: string[]): Promise<void> {
    const dirs = new Set<string>();
    for (const key of keys) {
      const path = this.pathOf(key);
      await rm(path, { force: true });
      dirs.add(dirname(path));
    }
    // A backup's folder goes with its last file; rmdir of a non-empty folder fails harmlessly.
    for (const dir of dirs) await rmdir(dir).catch(() => undefined);
  }

  /** Unfinished local writes are temporary files; remove those older than the cutoff. */
  async abortIncompleteUploads(prefix: string, startedBefore?: Date): Promise<number> {
    const base = this.pathOf(prefix);
    const entries = await readdir(base, { recursive: true }).catch(() => [] as string[]);
    let removed = 0;
    for (const entry of entries) {
      if (!entry.includes('.tmp-')) continue;
      const path = join(base, entry);
      const info = await stat(path).catch(() => undefined);
      if (!info || (startedBefore && info.mtime >= startedBefore)) continue;
      await rm(path, { force: true });
      removed++;
    }
    return removed;
  }
}

/** Makes a rename durable: the directory entry itself must reach the disk. */
export async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
