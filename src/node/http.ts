/**
 * The HTTP plumbing of the node: JSON bodies in, JSON out, and one error shape,
 * `{ "error": { "code", "message", "field"? } }`, so callers can branch on a code and show the
 * message as-is.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { z } from 'zod';

export interface ErrorBody {
  error: { code: string; message: string; field?: string; [detail: string]: unknown };
}

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field?: string,
    /** Extra machine-readable details, e.g. the list of routes on a 404. */
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }

  toBody(): ErrorBody {
    return {
      error: { ...this.details, code: this.code, message: this.message, ...(this.field ? { field: this.field } : {}) },
    };
  }
}

/** 10,000 events of a few KiB each fit comfortably; anything larger is a client bug. */
export const MAX_BODY_BYTES = 64 * 1024 * 1024;

/** Reads and parses the body; the content-type is not enforced (curl -d sends a form type). */
export async function readJsonBody(req: IncomingMessage, limit = MAX_BODY_BYTES): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new HttpError(413, 'PayloadTooLarge', `the request body exceeds ${limit} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') throw new HttpError(400, 'InvalidJson', 'the request body is empty; send a JSON object');
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new HttpError(400, 'InvalidJson', `the request body is not valid JSON: ${(err as Error).message}`);
  }
}

/** Parses input with a schema; the first issue becomes a 400 naming its field. */
export function parseInput<S extends z.ZodType>(schema: S, input: unknown, code = 'InvalidRequest'): z.output<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const issues = result.error.issues;
  const first = issues[0];
  // An unknown key is reported at its own name, so the field points at what to remove.
  const path = first ? [...first.path, ...(first.code === 'unrecognized_keys' ? first.keys.slice(0, 1) : [])] : [];
  const field = path.length > 0 ? path.map(String).join('.') : undefined;
  const described = issues
    .slice(0, 5)
    .map((i) => `${i.path.length ? i.path.map(String).join('.') : '(body)'}: ${i.message}`)
    .join('; ');
  const more = issues.length > 5 ? ` (and ${issues.length - 5} more problems)` : '';
  throw new HttpError(400, code, described + more, field);
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

/** Sends a JSON body given as pieces of its text (strings and UTF-8 bytes), without re-encoding them. */
export function sendJsonParts(res: ServerResponse, status: number, parts: ReadonlyArray<string | Uint8Array>): void {
  const chunks = parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : p));
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': chunks.reduce((n, c) => n + c.byteLength, 0),
  });
  for (const chunk of chunks) res.write(chunk);
  res.end();
}
