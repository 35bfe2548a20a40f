/**
 * The block checker (src/duckdb/blocks.ts) and the scrub (src/node/scrubber.ts) on real DuckDB
 * files: every block DuckDB wrote passes, the free list is DuckDB's own, a damaged block in use is
 * found (one on the free list is not judged), and a file of another storage version is refused.
 */
import assert from 'node:assert/strict';
import { copyFile, mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DuckDBInstance } from '@duckdb/node-api';
import {
  BLOCK_ALLOC_SIZE,
  SUPPORTED_STORAGE_VERSIONS,
  UnsupportedFormatError,
  blockBuffer,
  blockChecksum,
  blockOffset,
  checkBlock,
  readLayout,
} from '../src/duckdb/blocks';
import { damageBlockInUse } from '../src/dev/damage';
import { generateDatabase } from '../src/node/generate';
import { scrubFile, staticSubject } from '../src/node/scrubber';

let dir: string;
/** A file with a free list: rows deleted between checkpoints leave blocks free. */
let withFree: string;

async function sql(path: string, statements: string[]): Promise<Array<Record<string, unknown>>> {
  const instance = await DuckDBInstance.create(path);
  const connection = await instance.connect();
  let last: Array<Record<string, unknown>> = [];
  try {
    for (const statement of statements) last = (await connection.runAndReadAll(statement)).getRowObjects();
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
  return last;
}

async function layoutOf(path: string) {
  const handle = await open(path, 'r');
  try {
    return await readLayout(handle, path);
  } finally {
    await handle.close();
  }
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kimiclaw-scrub-'));
  withFree = join(dir, 'free.duckdb');
  await sql(withFree, [
    'CREATE TABLE t AS SELECT range AS id, md5(range::VARCHAR) AS s FROM range(1500000)',
    'CHECKPOINT',
    'DELETE FROM t WHERE id < 600000',
    'CHECKPOINT',
  ]);
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

void describe('DuckDB block checksums', () => {
  void test("the checksum is DuckDB 1.5's: 5381 xor each 64-bit word times 0xbf58476d1ce4e5b9", () => {
    const bytes = blockBuffer(16);
    const view = new DataView(bytes.buffer);
    view.setBigUint64(0, 1n, true);
    view.setBigUint64(8, 0xffff_ffff_ffff_ffffn, true);
    const k = 0xbf58476d1ce4e5b9n;
    const mask = (1n << 64n) - 1n;
    assert.equal(blockChecksum(bytes), 5381n ^ ((1n * k) & mask) ^ ((0xffff_ffff_ffff_ffffn * k) & mask));
    assert.equal(blockChecksum(blockBuffer(8)), 5381n);
  });

  void test('every block in use of a file DuckDB wrote matches; the free list is the one DuckDB reports', async () => {
    const layout = await layoutOf(withFree);
    assert.deepEqual(SUPPORTED_STORAGE_VERSIONS, [layout.storageVersion]);
    assert.match(layout.library, /^v1\.5\./);
    const [size] = await sql(withFree, ['PRAGMA database_size']);
    assert.equal(layout.blockCount, Number(size!.total_blocks));
    assert.equal(layout.free.size, Number(size!.free_blocks));
    assert.ok(layout.free.size > 0, 'the deletion left free blocks');
    const handle = await open(withFree, 'r');
    try {
      const buffer = blockBuffer();
      for (let id = 0; id < layout.blockCount; id++) {
        if (!layout.free.has(id)) assert.equal(await checkBlock(handle, id, buffer), 'ok', `block ${id}`);
      }
    } finally {
      await handle.close();
    }
    const outcome = await scrubFile(staticSubject(withFree), 0);
    assert.equal(outcome.kind, 'ok');
    assert.equal(
      outcome.kind === 'ok' && outcome.bytesChecked,
      (layout.blockCount - layout.free.size) * BLOCK_ALLOC_SIZE,
    );
  });

  void test('64 KiB overwritten in a block in use is found, naming the block and its offset', async () => {
    const copy = join(dir, 'damaged.duckdb');
    await generateDatabase(copy, { targetBytes: 6 * 1024 * 1024 });
    assert.equal((await scrubFile(staticSubject(copy), 0)).kind, 'ok');
    const damage = await damageBlockInUse(copy);
    const outcome = await scrubFile(staticSubject(copy), 0);
    assert.equal(outcome.kind, 'damaged');
    assert.match(
      outcome.kind === 'damaged' ? outcome.reason : '',
      new RegExp(`block ${damage.blockId} at offset ${damage.offset} is damaged: its checksum does not match`),
    );
  });

  void test('a damaged block on the free list is not judged (nothing in use is there)', async () => {
    const copy = join(dir, 'free-damaged.duckdb');
    await copyFile(withFree, copy);
    const layout = await layoutOf(copy);
    const freeBlock = [...layout.free][0]!;
    const handle = await open(copy, 'r+');
    await handle.write(Buffer.alloc(4096, 0xab), 0, 4096, blockOffset(freeBlock) + 8192);
    await handle.close();
    assert.equal((await scrubFile(staticSubject(copy), 0)).kind, 'ok');
  });

  void test('a damaged database header is found', async () => {
    const copy = join(dir, 'header.duckdb');
    await copyFile(withFree, copy);
    const handle = await open(copy, 'r+');
    await handle.write(Buffer.alloc(8, 0x5a), 0, 8, 4096 + 40);
    await handle.close();
    const outcome = await scrubFile(staticSubject(copy), 0);
    assert.equal(outcome.kind, 'damaged');
    assert.match(outcome.kind === 'damaged' ? outcome.reason : '', /a database header at offset 4096 is damaged/);
  });

  void test('a file of another storage version is refused, saying which, and nothing is judged', async () => {
    const newer = join(dir, 'v1.2.duckdb');
    await sql(':memory:', [
      `ATTACH '${newer}' AS n (STORAGE_VERSION 'v1.2.0')`,
      'CREATE TABLE n.t AS SELECT range AS id FROM range(300000)',
      'DETACH n',
    ]);
    const outcome = await scrubFile(staticSubject(newer), 0);
    assert.equal(outcome.kind, 'refused');
    assert.match(
      outcome.kind === 'refused' ? outcome.reason : '',
      /DuckDB storage version 65 .*knows version 64 only and does not check this file/,
    );
    await assert.rejects(layoutOf(newer), UnsupportedFormatError);
    const text = join(dir, 'not-duckdb');
    const handle = await open(text, 'w');
    await handle.write(Buffer.alloc(20_000, 0x41));
    await handle.close();
    const notDuck = await scrubFile(staticSubject(text), 0);
    assert.equal(notDuck.kind, 'refused');
  });
});
