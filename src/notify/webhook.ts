/**
 * Client notifications after a failover or switchover: one JSON POST per webhook, HMAC-signed so a
 * receiver can tell it came from us and was not replayed later.
 *
 * Delivery is at-least-once: a POST whose answer we never saw (timeout, reset) may have been
 * processed, so it is retried with the same delivery id and receivers dedupe by that id. The caller
 * that retries (an activity under Temporal's retry policy) records a 2xx and never sends the same
 * id again once one attempt is known to have succeeded. This module is one attempt, nothing more:
 * it says whether a retry can help (`retryable`), and the errors plug into
 * activities/failures.ts: a rejection is a ConfigProblem (final), an outage is Unavailable (retried).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { ConfigProblem, InputProblem, Unavailable, networkErrorCode } from '../errors';

/** Where a client wants to hear about primary changes. */
export interface WebhookTarget {
  url: string;
  /** Shared secret of the HMAC signature; without it the POST is sent unsigned. */
  secret?: string;
  /** A label for logs and error messages, e.g. "billing". */
  name?: string;
}

/** The one event we send: the database has a new primary, and clients should reconnect to it. */
export interface PrimaryChangeEvent {
  type: 'primary-changed';
  cluster: string;
  database: string;
  primary: { node: string; url: string };
  previous?: { node: string; url?: string };
  /** Grows with every promotion; a receiver can drop an event older than one it already applied. */
  epoch: number;
  reason: string;
  kind: 'failover' | 'switchover';
  /** ISO 8601 time of the promotion. */
  at: string;
  /** Same on every attempt of one notification; receivers dedupe by it. */
  deliveryId: string;
}

export const WEBHOOK_HEADERS = {
  delivery: 'x-kimiclaw-delivery',
  event: 'x-kimiclaw-event',
  signature: 'x-kimiclaw-signature',
} as const;

const USER_AGENT = 'kimiclaw-dr';
const DEFAULT_TIMEOUT_MS = 10_000;
/** How much of a refusing receiver's body ends up in the error message. */
const BODY_SNIPPET_CHARS = 200;

const ACCEPTED = 'expected http://… or https://…';

/** The problem with a webhook URL, or undefined when it is usable. Shared by the schema and the function. */
function webhookUrlProblem(url: unknown): string | undefined {
  if (typeof url !== 'string' || url.trim() === '') return `is empty; ${ACCEPTED}`;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    // Relative paths ("/hooks/x") and host-only text ("example.com/x") land here too.
    return `${JSON.stringify(url)} is not an absolute URL; ${ACCEPTED}`;
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    return `${JSON.stringify(url)} is not an http(s) URL; ${ACCEPTED}`;
  }
  if (parsed.username !== '' || parsed.password !== '') {
    // Do not echo the password back into logs.
    return (
      `"${parsed.protocol}//***@${parsed.host}${parsed.pathname}" carries credentials (user:password@); ` +
      `${ACCEPTED} without them, and set "secret" so the receiver can verify the signature instead`
    );
  }
  if (parsed.hostname === '') return `${JSON.stringify(url)} has no host; ${ACCEPTED}`;
  return undefined;
}

/**
 * Checks that `url` is an absolute http(s) URL without credentials and returns it normalised.
 * Throws a ConfigProblem naming `field`, e.g.
 * `cluster.webhooks[0].url: "ftp://x" is not an http(s) URL; expected http://… or https://…`.
 */
export function validateWebhookUrl(url: string, field: string): string {
  const problem = webhookUrlProblem(url);
  if (problem) throw new ConfigProblem(field, problem);
  return new URL(url).href;
}

/** A webhook in the config; the URL passes the same check as validateWebhookUrl. */
export const WebhookTargetSchema = z.object({
  url: z.string().transform((url, ctx) => {
    const problem = webhookUrlProblem(url);
    if (problem) {
      ctx.addIssue({ code: 'custom', message: problem });
      return z.NEVER;
    }
    return new URL(url).href;
  }),
  secret: z.string().min(1, 'must not be empty; leave it out to send unsigned').optional(),
  name: z.string().min(1).optional(),
});

/**
 * The signature header value: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`. The time is
 * inside the MAC so a captured request cannot be replayed once it is older than the tolerance.
 */
export function signPayload(body: string, secret: string, timestampSeconds: number): string {
  if (!Number.isSafeInteger(timestampSeconds) || timestampSeconds < 0) {
    throw new InputProblem('timestampSeconds', `${timestampSeconds} is not a whole number of seconds since 1970`);
  }
  return `t=${timestampSeconds},v1=${hmacHex(secret, `${timestampSeconds}.${body}`)}`;
}

function hmacHex(secret: string, text: string): string {
  return createHmac('sha256', secret).update(text, 'utf8').digest('hex');
}

/**
 * Whether `header` is a valid signature of `body` under `secret`, made within `toleranceSeconds` of
 * `now` (unix seconds). Several v1 entries are allowed (one per secret during a rotation); any match
 * is enough. The comparison is constant-time so the MAC cannot be guessed byte by byte.
 */
export function verifySignature(
  body: string,
  header: string | undefined,
  secret: string,
  toleranceSeconds = 300,
  now: number = Math.floor(Date.now() / 1000),
): boolean {
  if (!header || !secret) return false;
  let timestamp: number | undefined;
  const candidates: string[] = [];
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (key === 't' && /^\d{1,15}$/.test(value)) timestamp = Number(value);
    else if (key === 'v1' && /^[0-9a-f]{64}$/.test(value)) candidates.push(value);
  }
  if (timestamp === undefined || candidates.length === 0) return false;
  if (Math.abs(now - timestamp) > toleranceSeconds) return false;
  const expected = Buffer.from(hmacHex(secret, `${timestamp}.${body}`), 'hex');
  let match = false;
  for (const candidate of candidates) {
    // Every candidate is compared, so the time taken does not say which one matched.
    if (timingSafeEqual(expected, Buffer.from(candidate, 'hex'))) match = true;
  }
  return match;
}

/**
 * The receiver refused the notification (3xx, or 4xx other than 408/429): it will answer the same
 * next time, so this is final until someone fixes the URL, the secret or the receiver.
 */
export class WebhookRejected extends ConfigProblem {
  readonly retryable = false;
  /** The target's URL (may hold a token; messages show it without the query). */
  readonly url: string;
  constructor(
    target: { url: string; name?: string },
    readonly status: number,
    message: string,
  ) {
    super(`webhook ${describeTarget(target)}`, message);
    this.url = target.url;
    this.name = 'WebhookRejected';
  }
}

/** The receiver did not take the notification now (408, 429, 5xx, network, timeout); a retry may. */
export class WebhookUnavailable extends Unavailable {
  readonly retryable = true;
  /** The HTTP status when the receiver answered (408, 429, 5xx); undefined for network errors and timeouts. */
  readonly status: number | undefined;
  /** From a Retry-After header: how long the receiver asked us to wait. */
  readonly retryAfterMs: number | undefined;
  readonly url: string;
  constructor(
    target: { url: string; name?: string },
    message: string,
    options: { cause?: unknown; status?: number; retryAfterMs?: number } = {},
  ) {
    super(`waiting for webhook ${describeTarget(target)}: ${message}`, { cause: options.cause });
    this.url = target.url;
    this.name = 'WebhookUnavailable';
    this.status = options.status;
    this.retryAfterMs = options.retryAfterMs;
  }
}

export interface DeliverOptions {
  /** For the whole attempt, connect to the end of the answer; default 10 s. */
  timeoutMs?: number;
  /** Cancels the attempt (e.g. the activity's cancellation signal); its reason is rethrown. */
  signal?: AbortSignal;
}

/**
 * One delivery attempt of `event` to `target`. Resolves on 2xx with the status and the time it took;
 * throws WebhookRejected (final) or WebhookUnavailable (retry with the same event, hence the same
 * delivery id). Redirects are not followed: re-POSTing a signed payload to wherever a 3xx points
 * is not something the receiver's owner configured.
 */
export async function deliverWebhook(
  target: WebhookTarget,
  event: PrimaryChangeEvent,
  opts: DeliverOptions = {},
): Promise<{ status: number; ms: number }> {
  // The field names the target by its label, never by a URL that may hold credentials.
  const field = target.name ? `webhook "${target.name}"` : 'webhook';
  const href = validateWebhookUrl(target.url, `${field}.url`);
  const dest = { url: href, name: target.name };
  if (target.secret === '') throw new ConfigProblem(`${field}.secret`, 'is empty; leave it out to send unsigned');
  if (typeof event.deliveryId !== 'string' || event.deliveryId === '') {
    throw new InputProblem('event.deliveryId', 'must be a non-empty string; receivers dedupe by it');
  }
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const body = JSON.stringify(event);
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'user-agent': USER_AGENT,
    [WEBHOOK_HEADERS.delivery]: event.deliveryId,
    [WEBHOOK_HEADERS.event]: event.type,
  };
  if (target.secret !== undefined) {
    headers[WEBHOOK_HEADERS.signature] = signPayload(body, target.secret, Math.floor(Date.now() / 1000));
  }

  opts.signal?.throwIfAborted();
  const timeout = AbortSignal.timeout(timeoutMs);
  const signal = opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
  const started = performance.now();
  let response: Response;
  let snippet: string;
  try {
    response = await fetch(href, { method: 'POST', headers, body, redirect: 'manual', signal });
    // A 2xx body is not read, only released; any other says why in its first bytes.
    if (response.ok) {
      await response.body?.cancel();
      snippet = '';
    } else {
      snippet = await readSnippet(response);
    }
  } catch (err) {
    if (opts.signal?.aborted) throw opts.signal.reason;
    if (timeout.aborted) {
      throw new WebhookUnavailable(dest, `no answer within ${timeoutMs} ms`, { cause: err });
    }
    throw new WebhookUnavailable(dest, `POST failed: ${failureReason(err)}`, { cause: err });
  }
  const ms = Math.round(performance.now() - started);
  const { status } = response;
  if (status >= 200 && status < 300) return { status, ms };

  const said = snippet ? `: ${snippet}` : '';
  if (status === 408 || status === 429 || status >= 500) {
    throw new WebhookUnavailable(dest, `answered HTTP ${status}${said}`, {
      status,
      retryAfterMs: parseRetryAfter(response.headers.get('retry-after')),
    });
  }
  if (status >= 300 && status < 400) {
    const location = response.headers.get('location');
    throw new WebhookRejected(
      dest,
      status,
      `answered HTTP ${status} (redirect${location ? ` to ${redactUrl(location, href)}` : ''}); ` +
        'redirects are not followed, configure the final URL',
    );
  }
  throw new WebhookRejected(dest, status, `refused the notification with HTTP ${status}${said}`);
}

/** The URL without its query and fragment, which often carry tokens; with the name when there is one. */
function describeTarget({ url, name }: { url: string; name?: string }): string {
  const shown = redactUrl(url, url);
  return name ? `"${name}" (${shown})` : shown;
}

function redactUrl(url: string, base: string): string {
  try {
    const u = new URL(url, base);
    return `${u.origin}${u.pathname}${u.search ? '?…' : ''}`;
  } catch {
    return '(unparseable URL)';
  }
}

/** ECONNREFUSED and friends when known, else the innermost message (fetch only says "fetch failed"). */
function failureReason(err: unknown): string {
  const code = networkErrorCode(err);
  if (code) return code;
  let e: unknown = err;
  for (let depth = 0; depth < 5 && (e as { cause?: unknown })?.cause instanceof Error; depth++) {
    e = (e as { cause: unknown }).cause;
  }
  return e instanceof Error ? e.message : String(e);
}

/** The first characters of a response body, on one line; reads a few KiB at most. */
async function readSnippet(response: Response): Promise<string> {
  const reader = response.body?.getReader();
  if (!reader) return '';
  const decoder = new TextDecoder();
  let text = '';
  try {
    while (text.length < BODY_SNIPPET_CHARS * 4) {
      const { done, value } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
  return text.replace(/\s+/g, ' ').trim().slice(0, BODY_SNIPPET_CHARS);
}

/** Retry-After as milliseconds: delta-seconds or an HTTP date; undefined when absent or unreadable. */
function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}
