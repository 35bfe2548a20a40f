/**
 * Files a node replaces are moved aside, never deleted (docs/architecture.md, rule 6): a rebuild
 * moves the database file, its WAL and its damage marker to
 * <db>.duckdb.aside.<YYYYMMDDTHHMMSSmmmZ>.<reason>[.wal|.damaged] in the same directory. They are
 * listed by GET /aside, together with what a restore moved aside (<db>.duckdb.corrupted.<time>),
 * and removed by the node once older than its retention (--aside-retention).
 */
import { readdir, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { syncDirectory } from '../storage/local';

export interface AsideEntry {
  /** File name of the moved-aside database (its .wal and .damaged siblings count with it). */
  name: string;
  path: string;
  /** Bytes of the file and its siblings. */
  bytes: number;
  movedAt: string;
  reason: string;
  expiresAt: string;
}

const SIBLINGS = ['', '.wal', '.damaged'] as const;
/** <db>.duckdb.aside.<stamp>.<reason> and a restore's <db>.duckdb.corrupted.<stamp>. */
const ASIDE_RE = /^\.aside\.(\d{8}T\d{6}\d{3}Z)\.([a-z0-9-]+)$/;
const CORRUPTED_RE = /^\.corrupted\.(\d{8}T\d{6})(\d{3})?Z$/;

function stampOf(at: Date): string {
  return at.toISOString().replace(/[-:.]/g, '');
}

function parseStamp(stamp: string): Date {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(\d{3})?Z$/.exec(stamp);
  if (!m) return new Date(NaN);
  return new Date(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}.${m[7] ?? '000'}Z`);
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return false;
      throw err;
    },
  );
}

/**
 * A free name for something kept aside (<db>.duckdb.aside.<stamp>.<reason>), listed by GET /aside
 * and expired with the rest. reason: a short slug (a-z, 0-9, -).
 */
export async function asideName(databasePath: string, reason: string, at = new Date()): Promise<string> {
  if (!/^[a-z0-9-]+$/.test(reason)) throw new RangeError(`aside reason "${reason}" must be a slug (a-z, 0-9, -)`);
  let target = `${databasePath}.aside.${stampOf(at)}.${reason}`;
  for (let n = 2; await exists(target); n++) target = `${databasePath}.aside.${stampOf(at)}.${reason}-${n}`;
  return target;
}

/**
 * Moves the database file and its siblings aside; returns the new name of the database file (or
 * undefined when there was nothing to move). reason: a short slug (a-z, 0-9, -).
 */
export async function moveAside(databasePath: string, reason: string, at = new Date()): Promise<string | undefined> {
  const target = await asideName(databasePath, reason, at);
  let moved = false;
  for (const suffix of SIBLINGS) {
    if (!(await exists(`${databasePath}${suffix}`))) continue;
    await rename(`${databasePath}${suffix}`, `${target}${suffix}`);
    moved = true;
  }
  if (!moved) return undefined;
  await syncDirectory(dirname(databasePath));
  return target;
}

/** What is aside for this database, oldest first. */
export async function listAside(databasePath: string, retentionMs: number): Promise<AsideEntry[]> {
  const dir = dirname(databasePath);
  const base = basename(databasePath);
  const names = await readdir(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [] as string[];
    throw err;
  });
  const entries: AsideEntry[] = [];
  for (const name of names) {
    if (!name.startsWith(`${base}.`)) continue;
    const rest = name.slice(base.length);
    const aside = ASIDE_RE.exec(rest);
    const corrupted = aside ? undefined : CORRUPTED_RE.exec(rest);
    if (!aside && !corrupted) continue;
    const movedAt = aside ? parseStamp(aside[1]!) : parseStamp(`${corrupted![1]}${corrupted![2] ?? ''}Z`);
    if (Number.isNaN(movedAt.getTime())) continue;
    const path = join(dir, name);
    let bytes = 0;
    for (const suffix of SIBLINGS)
      bytes += await stat(`${path}${suffix}`).then(
        (s) => s.size,
        () => 0,
      );
    entries.push({
      name,
      path,
      bytes,
      movedAt: movedAt.toISOString(),
      reason: aside ? aside[2]! : 'restore',
      expiresAt: new Date(movedAt.getTime() + retentionMs).toISOString(),
    });
  }
  return entries.sort((a, b) => a.movedAt.localeCompare(b.movedAt) || a.name.localeCompare(b.name));
}

/** Removes what is aside past its retention; returns the names removed. */
export async function expireAside(databasePath: string, retentionMs: number, now = new Date()): Promise<string[]> {
  const removed: string[] = [];
  for (const entry of await listAside(databasePath, retentionMs)) {
    if (Date.parse(entry.expiresAt) > now.getTime()) continue;
    for (const suffix of SIBLINGS) await rm(`${entry.path}${suffix}`, { force: true });
    removed.push(entry.name);
  }
  return removed;
}
