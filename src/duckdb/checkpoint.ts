/**
 * A checkpoint that is known to have emptied the WAL. After it, and until the next write, the
 * main file alone holds every committed row, which is what makes copying it a valid snapshot.
 * A plain CHECKPOINT can be skipped or left partial by DuckDB (e.g. when other transactions
 * hold it back), so success is judged by the WAL on disk, not by the statement returning.
 */
import { stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { DuckDBConnection } from '@duckdb/node-api';

/** Size of <database>.wal; 0 when absent (DuckDB removes it after a full checkpoint). */
export async function walBytes(databasePath: string): Promise<number> {
  try {
    return (await stat(`${databasePath}.wal`)).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
}

export interface CheckpointResult {
  attempts: number;
  forced: boolean;
}

/**
 * Runs CHECKPOINT until the WAL is empty; the last attempt is a FORCE CHECKPOINT. The caller must
 * hold the write lock, so no write transaction of ours is open.
 *
 * Measured on DuckDB 1.5.6: a plain CHECKPOINT fails with "Cannot CHECKPOINT: there are other
 * write transactions active" when a read transaction started before the latest commits is still
 * running; FORCE CHECKPOINT then waits for that read to end (it does not abort it).
 */
export async function checkpointFully(
  connection: DuckDBConnection,
  databasePath: string,
  plainAttempts = 3,
): Promise<CheckpointResult> {
  for (let attempt = 1; attempt <= plainAttempts + 1; attempt++) {
    const forced = attempt > plainAttempts;
    try {
      await connection.run(forced ? 'FORCE CHECKPOINT' : 'CHECKPOINT');
    } catch (err) {
      if (forced || !/Cannot CHECKPOINT/i.test((err as Error).message)) throw err;
    }
    if ((await walBytes(databasePath)) === 0) return { attempts: attempt, forced };
    if (!forced) await sleep(25 * attempt);
  }
  throw new Error(
    `CHECKPOINT left ${await walBytes(databasePath)} bytes in ${databasePath}.wal after ${plainAttempts + 1} attempts`,
  );
}
