/**
 * What a failing disk does to a database file, for the tests and the benchmarks: bytes of a block
 * in use overwritten in place, behind DuckDB's back (the running node does not notice by itself;
 * its scrub must).
 */
import { randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';
import { BLOCK_ALLOC_SIZE, blockOffset, readLayout } from '../duckdb/blocks';

export interface Damage {
  /** The block overwritten (from its start: its checksum goes with it). */
  blockId: number;
  offset: number;
  bytes: number;
}

/**
 * Overwrites `bytes` (default 64 KiB) at the start of a block in use in the middle of the file
 * with random bytes. The file may be open in a node; the block is chosen from its current header.
 */
export async function damageBlockInUse(path: string, bytes = 64 * 1024): Promise<Damage> {
  if (bytes > BLOCK_ALLOC_SIZE) throw new RangeError(`damage at most one block (${BLOCK_ALLOC_SIZE} bytes)`);
  const handle = await open(path, 'r+');
  try {
    const layout = await readLayout(handle, path);
    const used = Array.from({ length: layout.blockCount }, (_, id) => id).filter((id) => !layout.free.has(id));
    const blockId = used[Math.floor(used.length / 2)];
    if (blockId === undefined) throw new Error(`${path} has no block in use yet (nothing checkpointed)`);
    const offset = blockOffset(blockId);
    await handle.write(randomBytes(bytes), 0, bytes, offset);
    await handle.sync();
    return { blockId, offset, bytes };
  } finally {
    await handle.close();
  }
}

/** Overwrites both database headers: DuckDB refuses to open the file ("Corrupt database file"). */
export async function damageHeaders(path: string): Promise<void> {
  const handle = await open(path, 'r+');
  try {
    for (const offset of [4096, 8192]) await handle.write(randomBytes(512), 0, 512, offset + 64);
    await handle.sync();
  } finally {
    await handle.close();
  }
}
