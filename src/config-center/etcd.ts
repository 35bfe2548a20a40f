/**
 * The config center on etcd (3.4 or newer), spoken to through etcd's own JSON gateway over plain
 * HTTP (`/v3/kv/range`, `/v3/kv/txn`, `/v3/watch`) so no gRPC client is needed. Keys and values
 * travel base64-encoded; values are JSON text.
 *
 * A value's revision token is etcd's `mod_revision` of the key, so compareAndSwap is a single
 * transaction: "if mod_revision is still R (or, for '0', the key was never created), put; else
 * read". Every request has a timeout; a server that does not answer, or answers 5xx, surfaces
 * as ConfigCenterUnavailable naming the endpoint, and with several endpoints each is tried in
 * turn. A request that timed out may still have been applied: a compareAndSwap retried on the
 * next endpoint then fails against its own write, which casPrimary recognises as success.
 */
import { ConfigProblem, networkErrorCode } from '../errors';
import {
  ConfigCenterUnavailable,
  checkRevision,
  encodeValue,
  type CasResult,
  type ConfigCenter,
  type Versioned,
} from './center';

export interface EtcdCenterOptions {
  /** Client URLs of the cluster's members, e.g. http://10.0.0.5:2379. */
  endpoints: string[];
  /** Per request; also how long a watch waits for its stream to open. Default 2 s. */
  timeoutMs?: number;
  /**
   * A watch stream silent for this long is reopened. Without it a connection that died without
   * a FIN (a host gone, a partition) would leave the watch waiting forever. Default 30 s.
   */
  watchIdleMs?: number;
}

const DEFAULT_TIMEOUT_MS = 2_000;
const DEFAULT_WATCH_IDLE_MS = 30_000;
const WATCH_RETRY_MIN_MS = 100;
const WATCH_RETRY_MAX_MS = 2_000;

interface EtcdHeader {
  revision?: string;
}

interface EtcdKv {
  key?: string;
  value?: string;
  create_revision?: string;
  mod_revision?: string;
  version?: string;
}

interface RangeResponse {
  header?: EtcdHeader;
  kvs?: EtcdKv[];
}

/** etcd leaves out fields at their default: `succeeded` is absent when the compare failed. */
interface TxnResponse {
  header?: EtcdHeader;
  succeeded?: boolean;
  responses?: { response_put?: { header?: EtcdHeader }; response_range?: RangeResponse }[];
}

interface WatchMessage {
  result?: {
    header?: EtcdHeader;
    created?: boolean;
    canceled?: boolean;
    cancel_reason?: string;
    compact_revision?: string;
    /** `type` is absent for PUT (the default) and "DELETE" for deletions. */
    events?: { type?: string; kv?: EtcdKv }[];
  };
  error?: { message?: string; http_code?: number };
}

export class EtcdCenter implements ConfigCenter {
  readonly describe: string;
  private readonly endpoints: string[];
  private readonly timeoutMs: number;
  private readonly watchIdleMs: number;
  /** The endpoint that answered last; tried first next time. */
  private preferred = 0;
  private readonly watches = new Map<AbortController, Promise<void>>();
  private closed = false;

  constructor(options: EtcdCenterOptions) {
    if (options.endpoints.length === 0) throw new ConfigProblem('endpoints', 'name at least one etcd client URL');
    this.endpoints = options.endpoints.map(normaliseEndpoint);
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.watchIdleMs = options.watchIdleMs ?? DEFAULT_WATCH_IDLE_MS;
    this.describe = `etcd at ${this.endpoints.join(', ')}`;
  }

  async get(key: string): Promise<Versioned<unknown>> {
    const out = await this.call<RangeResponse>('/v3/kv/range', { key: base64(key) });
    return this.versioned(key, out.kvs?.[0]);
  }

  async compareAndSwap(key: string, expectedRevision: string, value: unknown): Promise<CasResult> {
    const expected = checkRevision(expectedRevision);
    const text = encodeValue(key, value);
    const k = base64(key);
    // An absent key has create_revision 0; a present one has create_revision > 0 forever.
    const compare =
      expected === 0n
        ? { key: k, target: 'CREATE', result: 'EQUAL', create_revision: '0' }
        : { key: k, target: 'MOD', result: 'EQUAL', mod_revision: expectedRevision };
    const out = await this.call<TxnResponse>('/v3/kv/txn', {
      compare: [compare],
      success: [{ request_put: { key: k, value: base64(text) } }],
      // Reading in the failure branch returns the winner's value in the same round trip.
      failure: [{ request_range: { key: k } }],
    });
    if (out.succeeded === true) {
      // A transaction's writes all get the transaction's revision, which is the header's.
      const revision = out.responses?.[0]?.response_put?.header?.revision ?? out.header?.revision;
      if (!revision) throw new Error(`${this.describe} answered a transaction on ${key} without a revision`);
      return { ok: true, revision };
    }
    return { ok: false, current: this.versioned(key, out.responses?.[0]?.response_range?.kvs?.[0]) };
  }

  /**
   * Reads the key, then streams changes from the revision after that read. When the stream
   * breaks (etcd restarting, a member gone, compaction, a silent connection), it reads again
   * and opens a new stream, backing off while etcd is unreachable. A read answered at an older
   * revision than what was already delivered is not delivered, so values never go backwards.
   */
  watch(key: string, onChange: (v: Versioned<unknown>) => void): () => void {
    if (this.closed) throw new Error(`${this.describe}: watch after close()`);
    const stop = new AbortController();
    let deliveredRevision: string | undefined;
    const deliver = (v: Versioned<unknown>): void => {
      if (stop.signal.aborted || v.revision === deliveredRevision) return;
      deliveredRevision = v.revision;
      try {
        onChange(v);
      } catch (err) {
        // The watch keeps running: one bad callback must not blind the caller to later changes.
        process.emitWarning(`config center watch callback for ${key} threw: ${String(err)}`);
      }
    };
    const loop = this.watchLoop(key, stop.signal, deliver);
    this.watches.set(stop, loop);
    void loop.finally(() => this.watches.delete(stop));
    return () => stop.abort();
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const stop of this.watches.keys()) stop.abort();
    await Promise.all(this.watches.values());
  }

  private async watchLoop(key: string, signal: AbortSignal, deliver: (v: Versioned<unknown>) => void): Promise<void> {
    /** Every change up to this store revision has been delivered (or superseded). */
    let seen = 0n;
    let retryMs = WATCH_RETRY_MIN_MS;
    let lastWarning = '';
    while (!signal.aborted) {
      try {
        const out = await this.call<RangeResponse>('/v3/kv/range', { key: base64(key) });
        retryMs = WATCH_RETRY_MIN_MS;
        const at = BigInt(out.header?.revision ?? '0');
        if (at >= seen) {
          seen = at;
          deliver(this.versioned(key, out.kvs?.[0]));
        }
        await this.streamChanges(key, seen + 1n, signal, (revision, value) => {
          if (revision <= seen) return;
          seen = revision;
          deliver(value);
        });
      } catch (err) {
        if (signal.aborted) break;
        if (!(err instanceof ConfigCenterUnavailable) && String(err) !== lastWarning) {
          lastWarning = String(err);
          process.emitWarning(`config center watch on ${key} keeps retrying after: ${lastWarning}`);
        }
        await sleep(retryMs, signal);
        retryMs = Math.min(retryMs * 2, WATCH_RETRY_MAX_MS);
      }
    }
  }

  /** One watch stream on the endpoint that answered last; returns when it goes idle. */
  private async streamChanges(
    key: string,
    startRevision: bigint,
    stop: AbortSignal,
    onChange: (revision: bigint, value: Versioned<unknown>) => void,
  ): Promise<void> {
    const endpoint = this.endpoints[this.preferred] ?? this.endpoints[0]!;
    const controller = new AbortController();
    const onStop = (): void => controller.abort();
    stop.addEventListener('abort', onStop, { once: true });
    let connected = false;
    let idle = false;
    let timer: NodeJS.Timeout | undefined;
    const arm = (ms: number): void => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        idle = connected;
        controller.abort();
      }, ms);
    };
    // Network failures become ConfigCenterUnavailable here; a bad message from etcd stays what it is.
    const network = async <T>(step: () => Promise<T>): Promise<T> => {
      try {
        return await step();
      } catch (err) {
        throw stop.aborted ? err : this.unavailable(endpoint, '/v3/watch', err);
      }
    };
    arm(this.timeoutMs);
    try {
      const response = await network(() =>
        fetch(`${endpoint}/v3/watch`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ create_request: { key: base64(key), start_revision: startRevision.toString() } }),
          signal: controller.signal,
        }),
      );
      if (!response.ok || !response.body) {
        throw new ConfigCenterUnavailable(`etcd at ${endpoint} answered POST /v3/watch with HTTP ${response.status}`);
      }
      connected = true;
      arm(this.watchIdleMs);
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffered = '';
      for (;;) {
        const { done, value } = await network(() => reader.read());
        if (done) return;
        arm(this.watchIdleMs);
        buffered += decoder.decode(value, { stream: true });
        for (let newline = buffered.indexOf('\n'); newline >= 0; newline = buffered.indexOf('\n')) {
          const line = buffered.slice(0, newline).trim();
          buffered = buffered.slice(newline + 1);
          if (line) this.handleWatchLine(key, endpoint, line, onChange);
        }
      }
    } catch (err) {
      if (idle && !stop.aborted) return; // silent too long: the caller reads again and reconnects
      throw err;
    } finally {
      clearTimeout(timer);
      controller.abort(); // releases the connection when we leave early (a bad line, a cancel)
      stop.removeEventListener('abort', onStop);
    }
  }

  private handleWatchLine(
    key: string,
    endpoint: string,
    line: string,
    onChange: (revision: bigint, value: Versioned<unknown>) => void,
  ): void {
    const message = JSON.parse(line) as WatchMessage;
    if (message.error) {
      throw new ConfigCenterUnavailable(`etcd at ${endpoint} ended the watch on ${key}: ${message.error.message}`);
    }
    const result = message.result;
    if (!result) return;
    if (result.canceled || result.compact_revision) {
      // Compacted past our start revision (or cancelled by the server): read afresh.
      const why = result.cancel_reason || `compacted to revision ${result.compact_revision}`;
      throw new ConfigCenterUnavailable(`etcd at ${endpoint} cancelled the watch on ${key}: ${why}`);
    }
    for (const event of result.events ?? []) {
      const revision = event.kv?.mod_revision;
      if (!revision) continue;
      const value = event.type === 'DELETE' ? { value: undefined, revision: '0' } : this.versioned(key, event.kv);
      onChange(BigInt(revision), value);
    }
  }

  /** POSTs to each endpoint in turn, starting with the one that answered last. */
  private async call<T>(path: string, body: unknown): Promise<T> {
    if (this.closed) throw new Error(`${this.describe}: used after close()`);
    const failures: ConfigCenterUnavailable[] = [];
    for (let i = 0; i < this.endpoints.length; i++) {
      const index = (this.preferred + i) % this.endpoints.length;
      try {
        const out = await this.post<T>(this.endpoints[index]!, path, body);
        this.preferred = index;
        return out;
      } catch (err) {
        if (!(err instanceof ConfigCenterUnavailable)) throw err;
        failures.push(err);
      }
    }
    if (failures.length === 1) throw failures[0]!;
    throw new ConfigCenterUnavailable(`no etcd endpoint answered: ${failures.map((f) => f.message).join('; ')}`, {
      cause: failures[failures.length - 1],
    });
  }

  private async post<T>(endpoint: string, path: string, body: unknown): Promise<T> {
    let status: number;
    let text: string;
    try {
      const response = await fetch(`${endpoint}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        // Covers reading the body too: a server that stalls mid-answer is as unavailable.
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      status = response.status;
      text = await response.text();
    } catch (err) {
      throw this.unavailable(endpoint, path, err);
    }
    if (status >= 500) {
      throw new ConfigCenterUnavailable(
        `etcd at ${endpoint} answered POST ${path} with HTTP ${status}: ${errorText(text)}`,
      );
    }
    if (status === 404) {
      throw new Error(`${endpoint} has no POST ${path} (HTTP 404): is it the client URL of etcd 3.4 or newer?`);
    }
    if (status >= 400) throw new Error(`etcd at ${endpoint} refused POST ${path}: HTTP ${status}: ${errorText(text)}`);
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new Error(`${endpoint} answered POST ${path} with something other than JSON: is it an etcd client URL?`);
    }
  }

  private unavailable(endpoint: string, path: string, err: unknown): ConfigCenterUnavailable {
    // AbortSignal.timeout() rejects with a DOMException whose `code` is a number (23).
    const code = (err as { name?: unknown }).name === 'TimeoutError' ? 'TimeoutError' : networkErrorCode(err);
    const why =
      code === 'TimeoutError'
        ? `no answer within ${this.timeoutMs} ms`
        : (code ?? (err instanceof Error ? `${err.message}${causeText(err)}` : String(err)));
    return new ConfigCenterUnavailable(`etcd at ${endpoint} did not answer POST ${path}: ${why}`, { cause: err });
  }

  private versioned(key: string, kv: EtcdKv | undefined): Versioned<unknown> {
    if (!kv) return { value: undefined, revision: '0' };
    const text = Buffer.from(kv.value ?? '', 'base64').toString('utf8');
    try {
      return { value: JSON.parse(text) as unknown, revision: kv.mod_revision ?? '0' };
    } catch {
      throw new Error(`${this.describe}: the value of ${key} is not JSON: ${JSON.stringify(text.slice(0, 80))}`);
    }
  }
}

function normaliseEndpoint(endpoint: string): string {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new ConfigProblem(
      'endpoints',
      `"${endpoint}" is not a URL; use an etcd client URL such as http://127.0.0.1:2379`,
    );
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigProblem('endpoints', `"${endpoint}" must be an http(s) URL such as http://127.0.0.1:2379`);
  }
  return endpoint.replace(/\/+$/, '');
}

function base64(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64');
}

/** The message of a gateway error body ({"error","message","code"}), or the raw text. */
function errorText(text: string): string {
  try {
    const body = JSON.parse(text) as { message?: string; error?: string };
    return body.message ?? body.error ?? text;
  } catch {
    return text.trim().slice(0, 200) || '(empty body)';
  }
}

function causeText(err: Error): string {
  return err.cause instanceof Error ? ` (${err.cause.message})` : '';
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
