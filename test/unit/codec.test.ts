import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, test } from 'node:test';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_LEVEL, Meter, codecStream, compressFile, decompressToFile, zstdCommand } from '../../src/backup/codec';
import type { Compression } from '../../src/backup/ids';

/** Feeds `input` in chunks through the streams and returns everything that comes out. */
async function run(input: Buffer, ...streams: NodeJS.ReadWriteStream[]): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      chunks.push(chunk);
      done();
    },
  });
  const source = Readable.from(
    (function* () {
      for (let i = 0; i < input.length; i += 64 * 1024) yield input.subarray(i, i + 64 * 1024);
    })(),
  );
  await pipeline([source, ...streams, sink]);
  return Buffer.concat(chunks);
}

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

const RANDOM = randomBytes(1024 * 1024 + 17);
const REPETITIVE = Buffer.from('INSERT INTO events VALUES (1, 2, 3);\n'.repeat(40_000));

void describe('codecStream', () => {
  for (const codec of ['zstd', 'gzip'] as Compression[]) {
    for (const [name, data] of [
      ['random', RANDOM],
      ['repetitive', REPETITIVE],
      ['empty', Buffer.alloc(0)],
    ] as const) {
      void test(`${codec}: compress → decompress round trip of ${name} data`, async () => {
        const compress = codecStream(codec, 'compress');
        const compressed = await run(data, compress.stream);
        await compress.done;
        const decompress = codecStream(codec, 'decompress');
        const restored = await run(compressed, decompress.stream);
        await decompress.done;
        assert.equal(restored.length, data.length);
        assert.ok(restored.equals(data), 'restored bytes differ');
        if (name === 'repetitive') assert.ok(compressed.length < data.length / 20, `${compressed.length} bytes`);
      });
    }

    void test(`${codec}: output is the real format (magic bytes) and honours the level`, async () => {
      const fast = codecStream(codec, 'compress', 1);
      const small = await run(REPETITIVE, fast.stream);
      await fast.done;
      const magic = codec === 'zstd' ? '28b52ffd' : '1f8b';
      assert.equal(small.subarray(0, magic.length / 2).toString('hex'), magic);
      const best = codecStream(codec, 'compress', codec === 'zstd' ? 19 : 9);
      const smaller = await run(REPETITIVE, best.stream);
      await best.done;
      assert.ok(smaller.length <= small.length, `${smaller.length} > ${small.length}`);
    });
  }

  void test('default levels: zstd 1, gzip 6', () => {
    assert.deepEqual(DEFAULT_LEVEL, { zstd: 1, gzip: 6 });
  });

  void test('corrupt zstd input makes done reject with a message naming zstd', async () => {
    const decompress = codecStream('zstd', 'decompress');
    const piped = run(Buffer.from('this is not a zstd frame at all, not even close'), decompress.stream);
    await assert.rejects(decompress.done, (err: unknown) => {
      assert.ok(err instanceof Error);
      assert.match(err.message, /^zstd decompress failed \(exit \d+\)/);
      return true;
    });
    await piped.catch(() => undefined);
  });

  void test('a missing zstd command rejects with a message that says to install the zstd package', async () => {
    const saved = process.env.ZSTD_PATH;
    process.env.ZSTD_PATH = '/nonexistent/kimiclaw-test/zstd';
    try {
      assert.equal(zstdCommand(), '/nonexistent/kimiclaw-test/zstd');
      const compress = codecStream('zstd', 'compress');
      const streamError = new Promise<Error>((resolve) => compress.stream.once('error', resolve));
      await assert.rejects(compress.done, (err: unknown) => {
        assert.ok(err instanceof Error);
        assert.match(err.message, /^zstd compress: the "\/nonexistent\/kimiclaw-test\/zstd" command is not installed/);
        assert.match(err.message, /install the Debian package zstd/);
        assert.match(err.message, /"gzip"/);
        return true;
      });
      // The stream fails too, so a pipeline through it does not hang.
      assert.match((await streamError).message, /is not installed/);
    } finally {
      if (saved === undefined) delete process.env.ZSTD_PATH;
      else process.env.ZSTD_PATH = saved;
    }
    assert.equal(zstdCommand(), saved ?? 'zstd');
  });
});

void describe('Meter', () => {
  void test('passes bytes through, counts them and hashes them like node:crypto', async () => {
    const totals: number[] = [];
    const meter = new Meter((bytes) => totals.push(bytes));
    const out = await run(RANDOM, meter);
    assert.ok(out.equals(RANDOM));
    assert.equal(meter.bytes, RANDOM.length);
    assert.equal(meter.digest(), sha256(RANDOM));
    assert.ok(totals.length > 1);
    assert.equal(totals[totals.length - 1], RANDOM.length);
    assert.deepEqual(
      totals,
      [...totals].sort((a, b) => a - b),
    );
  });

  void test('an empty stream has zero bytes and the empty hash', async () => {
    const meter = new Meter();
    await run(Buffer.alloc(0), meter);
    assert.equal(meter.bytes, 0);
    assert.equal(meter.digest(), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  });

  void test('meters around a codec see compressed and source bytes', async () => {
    const source = new Meter();
    const stored = new Meter();
    const compress = codecStream('zstd', 'compress');
    const compressed = await run(REPETITIVE, source, compress.stream, stored);
    await compress.done;
    assert.equal(source.bytes, REPETITIVE.length);
    assert.equal(stored.bytes, compressed.length);
    assert.equal(source.digest(), sha256(REPETITIVE));
    assert.equal(stored.digest(), sha256(compressed));
  });
});

void describe('compressFile', () => {
  for (const codec of ['zstd', 'gzip'] as const) {
    void test(`${codec}: a file compresses to what decompresses back, and all of it was read`, async () => {
      const dir = await mkdtemp(join(tmpdir(), 'compress-file-'));
      try {
        const path = join(dir, 'source.bin');
        const data = Buffer.concat([RANDOM, REPETITIVE]);
        await writeFile(path, data);
        const compression = compressFile(path, codec);
        const chunks: Buffer[] = [];
        compression.stream.on('data', (c: Buffer) => chunks.push(c));
        await Promise.all([new Promise((r) => compression.stream.on('end', r)), compression.done]);
        const decompress = codecStream(codec, 'decompress');
        const restored = await run(Buffer.concat(chunks), decompress.stream);
        await decompress.done;
        assert.ok(restored.equals(data));
        assert.ok(compression.bytesRead() >= data.length, `read ${compression.bytesRead()} of ${data.length}`);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  }

  void test('a missing file fails with the codec named', async () => {
    const compression = compressFile('/nonexistent/file.duckdb', 'zstd');
    compression.stream.resume();
    await assert.rejects(compression.done, /zstd compress failed/);
  });
});

void describe('decompressToFile', () => {
  for (const codec of ['zstd', 'gzip'] as const) {
    void test(`${codec}: a compressed stream becomes the original file; corrupt input is refused`, async () => {
      const dir = await mkdtemp(join(tmpdir(), 'decompress-file-'));
      try {
        const compress = codecStream(codec, 'compress');
        const compressed = await run(REPETITIVE, compress.stream);
        await compress.done;
        const out = join(dir, 'restored.bin');
        await decompressToFile(Readable.from([compressed]), codec, out);
        assert.ok((await readFile(out)).equals(REPETITIVE));

        const corrupt = Buffer.from(compressed);
        corrupt.fill(0x55, 10, 40);
        await assert.rejects(decompressToFile(Readable.from([corrupt]), codec, join(dir, 'bad.bin')));
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  }
});
