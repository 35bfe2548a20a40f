/**
 * Crash-safe file placement: a reader of `dest` sees either the old file or the complete new
 * one, never a half-written file. Write to a unique temp name beside it, fsync, rename, then
 * fsync the directory so the rename itself survives a power cut.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { copyFile, open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';

/** A unique sibling of dest; retries never collide with a leftover of an earlier attempt. */
export function tempPathFor(dest: string): string {
  return `${dest}.tmp-${randomBytes(6).toString('hex')}`;
}

/** Copies with a reflink where the filesystem has them, else a plain kernel copy. */
export async function copyFast(src: string, dest: string): Promise<void> {
  await copyFile(src, dest, constants.COPYFILE_FICLONE);
}

export async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Makes a finished temp file durable and moves it over dest (overwriting is allowed). */
export async function commitTempFile(tmp: string, dest: string): Promise<void> {
  await fsyncPath(tmp);
  await rename(tmp, dest);
  await fsyncPath(dirname(dest));
}

export async function removeQuietly(path: string): Promise<void> {
  await rm(path, { force: true }).catch(() => undefined);
}
