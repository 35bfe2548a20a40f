/**
 * DuckDB's single-file storage format, as far as checking it block by block goes. DuckDB verifies
 * a block's checksum only when it reads the block from disk, and a running node serves most reads
 * from its buffer pool, so damage on disk stays silent until a restart or an eviction; reading the
 * blocks here finds it while the node runs (docs/node-api.md, "Damage, full disks, empty nodes").
 *
 * The layout, from DuckDB 1.5's src/storage/single_file_block_manager.cpp and
 * src/common/checksum.cpp, for an unencrypted file with the default block size:
 *
 *   0      main header (4 KiB): checksum, "DUCK", storage version number, flags, library version
 *   4096   database header 1 (4 KiB): checksum, iteration, meta block, free list, block count,
 *   8192   database header 2           block alloc size, vector size, serialization version
 *   12288  block 0, block 1, … (256 KiB each)
 *
 * Every header and block begins with an 8-byte checksum of the rest of it: 5381 XOR, for each
 * little-endian 64-bit word w, (w * 0xbf58476d1ce4e5b9) mod 2^64. The database header with the
 * higher iteration is the current one; blocks on its free list hold nothing in use (a block written
 * by a checkpoint that did not finish is free and may be torn), so only the others are checked.
 *
 * The format is pinned: a file of another storage version, encrypted, or with another block size
 * is refused (UnsupportedFormatError), never judged by rules that may not apply to it.
 */
import type { FileHandle } from 'node:fs/promises';

export const FILE_HEADER_SIZE = 4096;
export const BLOCK_START = 3 * FILE_HEADER_SIZE;
export const BLOCK_ALLOC_SIZE = 262_144;
const CHECKSUM_SIZE = 8;
/** Storage version numbers whose layout and checksum this module implements and is tested on. */
export const SUPPORTED_STORAGE_VERSIONS: readonly number[] = [64];
const MAGIC = 'DUCK';
const ENCRYPTED_FLAG = 1n;
/** A metadata block is 64 sub-blocks of floor8((256 KiB - 8) / 64) bytes, each led by a next pointer. */
const METADATA_SUB_BLOCKS = 64;
const METADATA_SUB_BLOCK_SIZE = Math.floor((BLOCK_ALLOC_SIZE - CHECKSUM_SIZE) / METADATA_SUB_BLOCKS / 8) * 8;
const NO_POINTER = 0xffff_ffff_ffff_ffffn;
const BLOCK_ID_MASK = 0x00ff_ffff_ffff_ffffn;

/** The file is not one this module can check; it says why. */
export class UnsupportedFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UnsupportedFormatError';
  }
}

/** A header or block whose stored checksum does not match its content (or that is cut short). */
export class CorruptBlockError extends Error {
  constructor(
    readonly path: string,
    /** Byte offset of the header or block in the file. */
    readonly offset: number,
    readonly what: string,
    detail: string,
  ) {
    super(`${path}: ${what} at offset ${offset} is damaged: ${detail}`);
    this.name = 'CorruptBlockError';
  }
}

const K_LO = 0x1ce4e5b9;
const K_HI = 0xbf58476d;
const K_LO_0 = K_LO & 0xffff;
const K_LO_1 = K_LO >>> 16;

/**
 * DuckDB's Checksum() of bytes whose length is a multiple of 8, as an unsigned 64-bit value. The
 * 64-bit products are built from 32-bit halves (Math.imul for the low words, 16-bit limbs for the
 * carry), so no BigInt is made per word: about 1 GB/s on one core.
 */
export function blockChecksum(bytes: Uint8Array): bigint {
  if (bytes.byteLength % 8 !== 0) throw new RangeError(`checksummed length ${bytes.byteLength} is not a multiple of 8`);
  const aligned = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  const words = new Uint32Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 4);
  let lo = 5381;
  let hi = 0;
  for (let i = 0; i < words.length; i += 2) {
    const a = words[i]!;
    const b = words[i + 1]!;
    const a0 = a & 0xffff;
    const a1 = a >>> 16;
    const t = a0 * K_LO_0;
    const m1 = a1 * K_LO_0 + (t >>> 16);
    const m2 = a0 * K_LO_1 + (m1 & 0xffff);
    const carry = a1 * K_LO_1 + Math.floor(m1 / 65536) + Math.floor(m2 / 65536);
    lo ^= Math.imul(a, K_LO);
    hi ^= (carry + Math.imul(a, K_HI) + Math.imul(b, K_LO)) | 0;
  }
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

/** Whether a header or block (its stored checksum first) is intact. */
export function checksumMatches(block: Uint8Array): boolean {
  const view = new DataView(block.buffer, block.byteOffset, block.byteLength);
  return view.getBigUint64(0, true) === blockChecksum(block.subarray(CHECKSUM_SIZE));
}

export interface FileLayout {
  storageVersion: number;
  /** The DuckDB release that wrote the main header, e.g. "v1.5.6". */
  library: string;
  /** Iteration of the current database header (one per checkpoint). */
  iteration: number;
  /** Blocks 0..blockCount-1 exist in the file. */
  blockCount: number;
  /** Blocks that hold nothing in use. */
  free: ReadonlySet<number>;
}

export function blockOffset(id: number): number {
  return BLOCK_START + id * BLOCK_ALLOC_SIZE;
}

/** Reads exactly length bytes at offset into buffer; false when the file ends first. */
async function readFully(handle: FileHandle, buffer: Uint8Array, offset: number): Promise<boolean> {
  let done = 0;
  while (done < buffer.byteLength) {
    const { bytesRead } = await handle.read(buffer, done, buffer.byteLength - done, offset + done);
    if (bytesRead === 0) return false;
    done += bytesRead;
  }
  return true;
}

/** A buffer for one block, 4-byte aligned so the checksum reads it without a copy. */
export function blockBuffer(size = BLOCK_ALLOC_SIZE): Uint8Array {
  return new Uint8Array(new ArrayBuffer(size));
}

async function readChecked(
  handle: FileHandle,
  path: string,
  buffer: Uint8Array,
  offset: number,
  what: string,
): Promise<DataView> {
  if (!(await readFully(handle, buffer, offset))) {
    throw new CorruptBlockError(path, offset, what, 'the file ends inside it');
  }
  if (!checksumMatches(buffer)) throw new CorruptBlockError(path, offset, what, 'its checksum does not match');
  return new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}

/**
 * Reads and checks the three headers and the free list of the current database header. Throws
 * UnsupportedFormatError for a file this module does not know how to check, CorruptBlockError for
 * a damaged header or free-list block.
 */
export async function readLayout(handle: FileHandle, path: string): Promise<FileLayout> {
  const header = blockBuffer(FILE_HEADER_SIZE);
  if (!(await readFully(handle, header, 0))) {
    throw new UnsupportedFormatError(`${path} is shorter than a DuckDB main header`);
  }
  const text = (from: number, length: number) =>
    Buffer.from(header.subarray(from, from + length))
      .toString('latin1')
      .replace(/\0+$/, '');
  if (text(CHECKSUM_SIZE, 4) !== MAGIC) throw new UnsupportedFormatError(`${path} is not a DuckDB database file`);
  if (!checksumMatches(header)) throw new CorruptBlockError(path, 0, 'the main header', 'its checksum does not match');
  const main = new DataView(header.buffer);
  const storageVersion = Number(main.getBigUint64(12, true));
  const library = text(52, 32);
  if (!SUPPORTED_STORAGE_VERSIONS.includes(storageVersion)) {
    throw new UnsupportedFormatError(
      `${path} is in DuckDB storage version ${storageVersion} (written by ${library || 'an unknown release'}); ` +
        `the block checker knows version ${SUPPORTED_STORAGE_VERSIONS.join(', ')} only and does not check this file`,
    );
  }
  if ((main.getBigUint64(20, true) & ENCRYPTED_FLAG) !== 0n) {
    throw new UnsupportedFormatError(`${path} is encrypted; the block checker reads unencrypted files only`);
  }
  const databaseHeaders = [];
  for (const offset of [FILE_HEADER_SIZE, 2 * FILE_HEADER_SIZE]) {
    const view = await readChecked(handle, path, blockBuffer(FILE_HEADER_SIZE), offset, 'a database header');
    databaseHeaders.push({
      iteration: view.getBigUint64(8, true),
      freeList: view.getBigUint64(24, true),
      blockCount: Number(view.getBigUint64(32, true)),
      blockAllocSize: Number(view.getBigUint64(40, true)),
    });
  }
  const [h1, h2] = databaseHeaders as [(typeof databaseHeaders)[0], (typeof databaseHeaders)[0]];
  const current = h1.iteration > h2.iteration ? h1 : h2;
  if (current.blockAllocSize !== BLOCK_ALLOC_SIZE && current.blockAllocSize !== 0) {
    throw new UnsupportedFormatError(
      `${path} has ${current.blockAllocSize}-byte blocks; the block checker reads ${BLOCK_ALLOC_SIZE}-byte blocks only`,
    );
  }
  return {
    storageVersion,
    library,
    iteration: Number(current.iteration),
    blockCount: current.blockCount,
    free: await readFreeList(handle, path, current.freeList),
  };
}

/**
 * The free list: a u64 count then that many block ids, written through DuckDB's metadata chain
 * (sub-blocks of metadata blocks, each starting with the pointer to the next; a pointer is a block
 * id with the sub-block index in its top byte). Every metadata block read is checksummed whole.
 */
async function readFreeList(handle: FileHandle, path: string, pointer: bigint): Promise<Set<number>> {
  const free = new Set<number>();
  let count: number | undefined;
  const blocks = new Map<number, DataView>();
  for (let next = pointer; next !== NO_POINTER;) {
    const id = Number(next & BLOCK_ID_MASK);
    const index = Number(next >> 56n);
    let block = blocks.get(id);
    if (!block) {
      block = await readChecked(handle, path, blockBuffer(), blockOffset(id), `metadata block ${id}`);
      blocks.set(id, block);
    }
    const start = CHECKSUM_SIZE + index * METADATA_SUB_BLOCK_SIZE;
    next = block.getBigUint64(start, true);
    for (let at = start + 8; at + 8 <= start + METADATA_SUB_BLOCK_SIZE; at += 8) {
      const value = Number(block.getBigInt64(at, true));
      if (count === undefined) count = value;
      else if (free.size < count) free.add(value);
      if (count !== undefined && free.size >= count) return free;
    }
  }
  if (count !== undefined && free.size < count) {
    throw new CorruptBlockError(path, 0, 'the free list', `it lists ${free.size} of ${count} blocks`);
  }
  return free;
}

/** Reads block id into buffer; 'short' when the file ends inside it. */
export async function checkBlock(handle: FileHandle, id: number, buffer: Uint8Array): Promise<'ok' | 'bad' | 'short'> {
  if (!(await readFully(handle, buffer, blockOffset(id)))) return 'short';
  return checksumMatches(buffer) ? 'ok' : 'bad';
}
