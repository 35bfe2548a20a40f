/**
 * A sealed log segment: the events of a contiguous LSN range, as newline-delimited JSON (the rows
 * exactly as the node stores them), compressed with zstd. The key names the range, so archiving
 * the same range twice writes the same object: no duplicates, and a missing key is a visible gap.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { codecStream } from '../backup/codec';

import type { LogEvent } from '../duckdb/replay';

export type { LogEvent };

export interface EncodedSegment {
  body: Buffer;
  sha256: string;
  rows: number;
  firstTs: string;
  lastTs: string;
}

async function collect(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function transform(input: Buffer, direction: 'compress' | 'decompress'): Promise<Buffer> {
  const codec = codecStream('zstd', direction, 3);
  const [out] = await Promise.all([collect(Readable.from([input]).pipe(codec.stream)), codec.done]);
  return out;
}

export async function encodeSegment(events: readonly LogEvent[]): Promise<EncodedSegment> {
  if (events.length === 0) throw new RangeError('a segment needs at least one event');
  const text = events.map((e) => JSON.stringify([e.id, e.lsn, e.ts, e.kind, e.payload])).join('\n') + '\n';
  const body = await transform(Buffer.from(text, 'utf8'), 'compress');
  return {
    body,
    sha256: createHash('sha256').update(body).digest('hex'),
    rows: events.length,
    firstTs: events[0]!.ts,
    lastTs: events[events.length - 1]!.ts,
  };
}

/** Decodes a stored segment; throws naming the key when the bytes are not what was sealed. */
export async function decodeSegment(body: Buffer, key: string, expectedSha256?: string): Promise<LogEvent[]> {
  if (expectedSha256) {
    const actual = createHash('sha256').update(body).digest('hex');
    if (actual !== expectedSha256) {
      throw new Error(`log segment ${key} is corrupt: SHA-256 ${actual}, sealed as ${expectedSha256}`);
    }
  }
  const text = (await transform(body, 'decompress')).toString('utf8');
  return text
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line, i) => {
      const row = JSON.parse(line) as unknown;
      if (!Array.isArray(row) || row.length !== 5)
        throw new Error(`log segment ${key}, line ${i + 1}: not an event row`);
      const [id, lsn, ts, kind, payload] = row as [number, number, string, string, string];
      return { id, lsn, ts, kind, payload };
    });
}
