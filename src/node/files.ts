/**
 * File placement for snapshots: written to a unique temp name beside the destination and renamed
 * over it, so a reader of `dest` never sees a half-written file.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { copyFile, rm } from 'node:fs/promises';

/** A unique sibling of dest; retries never collide with a leftover of an earlier attempt. */
export function tempPathFor(dest: string): string {
  return `${dest}.tmp-${randomBytes(6).toString('hex')}`;
}

/** Copies with a reflink where the filesystem has them, else a plain kernel copy. */
export async function copyFast(src: string, dest: string): Promise<void> {
  await copyFile(src, dest, constants.COPYFILE_FICLONE);
}

export async function removeQuietly(path: string): Promise<void> {
  await rm(path, { force: true }).catch(() => undefined);
}
