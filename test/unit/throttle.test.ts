import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, test } from 'node:test';
import { Throttle } from '../../src/backup/throttle';

async function through(throttle: Throttle, chunks: Buffer[]): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(
    Readable.from(chunks),
    throttle,
    new Writable({
      write(chunk: Buffer, _enc, done) {
        out.push(chunk);
        done();
      },
    }),
  );
  return Buffer.concat(out);
}

void describe('Throttle', () => {
  void test('passes all bytes unchanged and in order', async () => {
    const chunks = Array.from({ length: 50 }, (_, i) => randomBytes(1_000 + i * 37));
    const out = await through(new Throttle(1e12), chunks);
    assert.ok(out.equals(Buffer.concat(chunks)));
  });

  void test('an empty stream passes', async () => {
    assert.equal((await through(new Throttle(1), [])).length, 0);
  });

  void test('a limit of N bytes/s holds back 3N bytes for at least ~1.5 s', async () => {
    const perSecond = 64 * 1024;
    const chunks = Array.from({ length: 12 }, () => randomBytes(perSecond / 4));
    const started = Date.now();
    const out = await through(new Throttle(perSecond), chunks);
    const elapsed = Date.now() - started;
    assert.equal(out.length, 3 * perSecond);
    assert.ok(out.equals(Buffer.concat(chunks)));
    // Only a throttle that does nothing can fail this; the exact time is left to the machine.
    assert.ok(elapsed >= 1_500, `took ${elapsed} ms`);
  });
});
