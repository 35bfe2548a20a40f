/**
 * A real webhook receiver on loopback, for tests and the dev setup: it checks what a client's
 * receiver should check (method, JSON, delivery id, signature), dedupes by delivery id the way we
 * ask clients to, and can be told to fail or be slow so the retry paths run against real HTTP.
 */
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WEBHOOK_HEADERS, verifySignature, type PrimaryChangeEvent } from './webhook';

export interface ReceivedDelivery {
  deliveryId: string;
  event: PrimaryChangeEvent;
  /** Whether the signature checked out; undefined when the receiver has no secret. */
  signatureValid: boolean | undefined;
  /** Date.now() when it was accepted. */
  at: number;
  /** The request's headers (lower-case names), to check what a sender puts on the wire. */
  headers: IncomingHttpHeaders;
}

export interface WebhookReceiverOptions {
  /** Verify x-kimiclaw-signature with this secret; a bad or missing one is answered 401. */
  secret?: string;
  /** Answer the first N requests with `failStatus` (a receiver that is down, then back). */
  failFirst?: number;
  /** The status of those failures; default 503. 400 or 401 make a receiver that refuses. */
  failStatus?: number;
  /** Wait this long before answering any request (a slow receiver, for timeouts). */
  delayMs?: number;
  /** Accept deliveries whose signature is wrong (recorded with signatureValid false), to inspect them. */
  acceptInvalidSignatures?: boolean;
}

export interface WebhookReceiver {
  /** http://127.0.0.1:<port>/hooks/primary-changed */
  url: string;
  /** Accepted (2xx-answered) deliveries, one per delivery id, in arrival order. */
  received: ReceivedDelivery[];
  /** Every request that reached the server, answered however. */
  readonly requests: number;
  /** Requests that repeated an already accepted delivery id (answered 200, not recorded again). */
  readonly duplicates: number;
  close(): Promise<void>;
}

/** Larger bodies are not a notification of ours. */
const MAX_BODY_BYTES = 1024 * 1024;

export async function startWebhookReceiver(opts: WebhookReceiverOptions = {}): Promise<WebhookReceiver> {
  const failFirst = opts.failFirst ?? 0;
  const failStatus = opts.failStatus ?? 503;
  const received: ReceivedDelivery[] = [];
  const seen = new Set<string>();
  let requests = 0;
  let duplicates = 0;
  let closed = false;
  // Pending delays end at once on close, so close() never waits for a slow answer.
  const waiting = new Set<() => void>();

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        waiting.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      waiting.add(done);
    });

  const answer = (res: ServerResponse, status: number, body: Record<string, unknown>) => {
    if (closed || res.writableEnded || res.destroyed) return;
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const n = ++requests;
    const body = await readBody(req);
    if (opts.delayMs) await sleep(opts.delayMs);
    if (closed) return;
    if (body === undefined) return answer(res, 413, { error: `body larger than ${MAX_BODY_BYTES} bytes` });
    if (n <= failFirst) {
      return answer(res, failStatus, { error: `receiver fails the first ${failFirst} requests (this is ${n})` });
    }
    if (req.method !== 'POST') return answer(res, 405, { error: `${req.method} is not accepted; POST the event` });

    let event: PrimaryChangeEvent;
    try {
      event = JSON.parse(body) as PrimaryChangeEvent;
    } catch {
      return answer(res, 400, { error: 'body is not JSON' });
    }
    if (event?.type !== 'primary-changed' || typeof event.deliveryId !== 'string' || event.deliveryId === '') {
      return answer(res, 400, { error: 'not a primary-changed event with a deliveryId' });
    }
    const headerId = req.headers[WEBHOOK_HEADERS.delivery];
    if (headerId !== event.deliveryId) {
      return answer(res, 400, {
        error: `${WEBHOOK_HEADERS.delivery} header (${String(headerId)}) differs from the body's deliveryId`,
      });
    }

    let signatureValid: boolean | undefined;
    if (opts.secret !== undefined) {
      const header = req.headers[WEBHOOK_HEADERS.signature];
      signatureValid = verifySignature(body, typeof header === 'string' ? header : undefined, opts.secret);
      if (!signatureValid && !opts.acceptInvalidSignatures) {
        return answer(res, 401, { error: `${WEBHOOK_HEADERS.signature} is missing, wrong or too old` });
      }
    }

    if (seen.has(event.deliveryId)) {
      duplicates++;
      return answer(res, 200, { ok: true, duplicate: true });
    }
    seen.add(event.deliveryId);
    received.push({ deliveryId: event.deliveryId, event, signatureValid, at: Date.now(), headers: req.headers });
    return answer(res, 200, { ok: true });
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      answer(res, 500, { error: err instanceof Error ? err.message : String(err) });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}/hooks/primary-changed`,
    received,
    get requests() {
      return requests;
    },
    get duplicates() {
      return duplicates;
    },
    close() {
      if (closed) return Promise.resolve();
      closed = true;
      for (const done of [...waiting]) done();
      return new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        // Keep-alive sockets and requests still being answered would hold close() open.
        server.closeAllConnections();
      });
    },
  };
}

/** The request body as text, or undefined when it exceeds MAX_BODY_BYTES. */
async function readBody(req: IncomingMessage): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  let tooLarge = false;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) tooLarge = true;
    // Keep draining so the answer reaches the client, but stop storing.
    if (!tooLarge) chunks.push(chunk);
  }
  return tooLarge ? undefined : Buffer.concat(chunks).toString('utf8');
}
