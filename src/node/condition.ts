/**
 * What state the node's database is in, apart from maintenance: ok, damaged (the file is corrupt:
 * it stays put until a rebuild or restore replaces it), unwritable (the write path fails: a full
 * disk, a database DuckDB invalidated; the node reopens it by itself once that works again) or
 * empty (no database yet: the node waits to be told what it is). Every state but ok refuses writes
 * with its own code, quickly, instead of an error per request (docs/node-api.md, "Damage, full
 * disks, empty nodes").
 *
 * Damage is remembered across restarts in a marker beside the file (<db>.duckdb.damaged), bound to
 * the file's identity: a node killed with a damaged file comes back damaged even when DuckDB can
 * still open it, and a file put in its place (a restore, a rebuild) is not taken for damaged.
 */
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import { z } from 'zod';

export const DETECTED_BY = ['open', 'scrub', 'read', 'write', 'checkpoint'] as const;
export type DetectedBy = (typeof DETECTED_BY)[number];

export const DamageSchema = z.strictObject({
  reason: z.string(),
  detectedBy: z.enum(DETECTED_BY),
  /** ISO time it was detected. */
  at: z.string(),
});
export type Damage = z.infer<typeof DamageSchema>;

export type Condition =
  | { status: 'ok' }
  | { status: 'damaged'; damage: Damage }
  | { status: 'unwritable'; damage: Damage }
  | { status: 'empty' };
export type ConditionStatus = Condition['status'];

/** The database file is damaged; writes and replication are refused until it is replaced. */
export class DamagedError extends Error {
  constructor(readonly damage: Damage) {
    super(
      `the database file is damaged (${damage.reason}; detected by ${damage.detectedBy} at ${damage.at}); ` +
        'the node refuses writes until it is rebuilt from a replica (POST /replication/snapshot) or restored',
    );
    this.name = 'DamagedError';
  }
}

/** The write path fails; the node retries reopening its database and comes back fenced. */
export class UnwritableError extends Error {
  constructor(readonly damage: Damage) {
    super(
      `the database cannot be written (${damage.reason}; since ${damage.at}); the node reopens it by itself once ` +
        'that works again (e.g. when disk space is freed) and then comes back fenced',
    );
    this.name = 'UnwritableError';
  }
}

/** The node has no database yet. */
export class EmptyError extends Error {
  constructor(readonly path: string) {
    super(
      `this node has no database (${path} is missing); it waits for POST /initialize { role, epoch } or a ` +
        'replication snapshot from a primary (POST /replication/snapshot)',
    );
    this.name = 'EmptyError';
  }
}

/** POST /initialize on a node that has a database. */
export class NotEmptyError extends Error {
  constructor(readonly path: string) {
    super(`this node already has a database (${path}); POST /initialize applies to an empty node only`);
    this.name = 'NotEmptyError';
  }
}

/**
 * What a DuckDB (or file system) error says about the file: corrupt (checksums, a file that is not
 * a database, a medium error), fatal for the write path (DuckDB invalidated the instance, the disk
 * is full or read-only), or nothing in particular (undefined).
 */
export function classifyDatabaseError(err: unknown): 'corrupt' | 'fatal' | undefined {
  const message = err instanceof Error ? err.message : String(err);
  if (/Corrupt database file|not a valid DuckDB database file|Input\/output error|\bEIO\b/i.test(message)) {
    return 'corrupt';
  }
  if (
    /FATAL Error|database has been invalidated|No space left on device|ENOSPC|Disk quota exceeded|Read-only file system|EROFS/i.test(
      message,
    )
  ) {
    return 'fatal';
  }
  return undefined;
}

export function damageOf(err: unknown, detectedBy: DetectedBy): Damage {
  const message = err instanceof Error ? err.message : String(err);
  // DuckDB's invalidation message repeats the original error; the first line says enough.
  return { reason: message.split('\n')[0]!.slice(0, 500), detectedBy, at: new Date().toISOString() };
}

export class NodeCondition {
  private state: Condition = { status: 'ok' };

  constructor(
    /** The database file (for messages). */
    readonly path: string,
  ) {}

  get current(): Condition {
    return this.state;
  }

  get status(): ConditionStatus {
    return this.state.status;
  }

  set(next: Condition): void {
    this.state = next;
  }

  /** Why new work of this kind is refused, or undefined when it may go on. */
  refusal(kind: 'write' | 'read'): Error | undefined {
    const state = this.state;
    switch (state.status) {
      case 'ok':
        return undefined;
      case 'empty':
        return new EmptyError(this.path);
      case 'unwritable':
        return new UnwritableError(state.damage);
      case 'damaged':
        // Reads of a damaged file may still succeed (DuckDB checks each block it reads): the log
        // archive can drain the acknowledged tail before the node is rebuilt.
        return kind === 'read' ? undefined : new DamagedError(state.damage);
    }
  }
}

const MarkerSchema = z.strictObject({
  damage: DamageSchema,
  /** dev:ino of the file the damage was found in. */
  file: z.string(),
  /** What the node knew when the damage was found, so a restart with an unreadable file still knows. */
  role: z.enum(['primary', 'replica', 'fenced', 'none']),
  epoch: z.number().int().min(0),
  history: z.array(z.strictObject({ epoch: z.number().int(), startLsn: z.number().int() })),
  lsn: z.number().int().min(0),
  rows: z.number().int().min(0),
  ackedLsn: z.number().int().min(0),
});
export type DamageMarker = z.infer<typeof MarkerSchema>;

export const markerPath = (databasePath: string): string => `${databasePath}.damaged`;

/** dev:ino of a file, or undefined when there is none. */
export async function fileIdentity(path: string): Promise<string | undefined> {
  const info = await stat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  return info ? `${info.dev}:${info.ino}` : undefined;
}

export async function writeDamageMarker(databasePath: string, marker: DamageMarker): Promise<void> {
  await writeFile(markerPath(databasePath), `${JSON.stringify(marker, null, 2)}\n`);
}

/**
 * The marker of the file now at the path: undefined when there is none, or when it describes
 * another file (one a restore moved aside), which is then removed.
 */
export async function readDamageMarker(databasePath: string): Promise<DamageMarker | undefined> {
  const path = markerPath(databasePath);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  let parsed: ReturnType<typeof MarkerSchema.safeParse>;
  try {
    parsed = MarkerSchema.safeParse(JSON.parse(text));
  } catch {
    parsed = MarkerSchema.safeParse(undefined);
  }
  const identity = await fileIdentity(databasePath);
  if (!parsed.success || parsed.data.file !== identity) {
    await rm(path, { force: true });
    return undefined;
  }
  return parsed.data;
}
