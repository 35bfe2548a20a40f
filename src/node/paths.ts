/**
 * Where a snapshot may be written: only inside the node's data directory. The check runs on the
 * real path (".." collapsed, symlinks of the existing part of the parent resolved), so neither
 * "data/../../etc/x" nor a symlinked directory pointing elsewhere escapes it. Nothing is created
 * before the check passes.
 */
import { realpath, stat } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';

export class InvalidPathError extends Error {
  readonly field = 'path';
  constructor(message: string) {
    super(message);
    this.name = 'InvalidPathError';
  }
}

/** Resolves the existing prefix of dir through realpath and appends the not-yet-existing rest. */
async function realDirectory(dir: string): Promise<string> {
  const missing: string[] = [];
  let current = dir;
  for (;;) {
    try {
      return join(await realpath(current), ...missing.reverse());
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOTDIR') throw new InvalidPathError(`${dir} goes through a file that is not a directory`);
      if (code !== 'ENOENT') throw err;
      const parent = dirname(current);
      if (parent === current) throw err;
      missing.push(basename(current));
      current = parent;
    }
  }
}

function isInside(root: string, candidate: string): boolean {
  const rel = relative(root, candidate);
  return rel === '' || (rel.split(sep)[0] !== '..' && !isAbsolute(rel));
}

/**
 * Returns the canonical target path for a snapshot, or throws InvalidPathError naming the path,
 * the data directory and the rule broken. `reserved` are files that must never be overwritten
 * (the live database and its WAL).
 */
export async function resolveSnapshotPath(dataDir: string, requested: string, reserved: string[]): Promise<string> {
  const realDataDir = await realpath(dataDir);
  const rule = `must be an absolute file path inside the data directory ${realDataDir}`;
  if (!isAbsolute(requested)) throw new InvalidPathError(`path "${requested}" is relative; it ${rule}`);
  if (requested.endsWith('/') || requested.endsWith(sep)) {
    throw new InvalidPathError(`path "${requested}" names a directory; it ${rule}`);
  }
  const normalized = resolve(requested);
  const parent = await realDirectory(dirname(normalized));
  const target = join(parent, basename(normalized));
  if (!isInside(realDataDir, parent) || target === realDataDir) {
    throw new InvalidPathError(`path "${requested}" resolves to ${target}, outside the data directory; it ${rule}`);
  }
  const parentInfo = await stat(parent).catch(() => undefined);
  if (parentInfo && !parentInfo.isDirectory()) {
    throw new InvalidPathError(`path "${requested}": ${parent} is not a directory; the path ${rule}`);
  }
  const reservedReal = await Promise.all(
    reserved.map((p) => realDirectory(dirname(p)).then((d) => join(d, basename(p)))),
  );
  if (reservedReal.includes(target)) {
    throw new InvalidPathError(`path "${requested}" is the live database or its WAL; choose another file name`);
  }
  const existing = await stat(target).catch(() => undefined);
  if (existing?.isDirectory()) throw new InvalidPathError(`path "${requested}" is an existing directory; it ${rule}`);
  return target;
}
