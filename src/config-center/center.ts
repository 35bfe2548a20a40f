/**
 * The config center: the one place that says which node is the cluster's primary. A failover
 * workflow promotes a node and then records it here; every client and node reads it here. Two
 * failovers racing (a retried workflow, an operator acting by hand) must not both win, so every
 * write is a compare-and-swap, and the record carries an epoch that only ever grows: a writer
 * that read epoch 7 can replace epoch 7, never a newer one it has not seen.
 *
 * Implementations: etcd through its JSON gateway (etcd.ts) for real clusters, one JSON file
 * (file.ts) for a single host. The helpers below work on the interface only.
 */
import { isDeepStrictEqual } from 'node:util';
import { Unavailable } from '../errors';

/** Who is primary, since when, and under which epoch. */
export interface PrimaryRecord {
  node: string;
  url: string;
  epoch: number;
  /** ISO 8601 timestamp. */
  since: string;
  /** Id of the failover workflow that wrote it, when a workflow did. */
  failover?: string;
}

export interface Versioned<T> {
  value: T | undefined;
  /** Opaque token for compareAndSwap; '0' when the key is absent. */
  revision: string;
}

export type CasResult = { ok: true; revision: string } | { ok: false; current: Versioned<unknown> };

export interface ConfigCenter {
  /** Where the data lives, for messages: "etcd at http://127.0.0.1:2379", "file /x/y.json". */
  readonly describe: string;
  get(key: string): Promise<Versioned<unknown>>;
  /**
   * Writes value only if the key's current revision equals expected ('0' = must not exist).
   * Returns {ok:true, revision} or {ok:false, current: Versioned<unknown>}.
   */
  compareAndSwap(key: string, expectedRevision: string, value: unknown): Promise<CasResult>;
  /**
   * Calls onChange with each new value (and once with the current value at start); returns a
   * stop function. Survives the server restarting (reconnect/poll), and never delivers a value
   * older than one it already delivered.
   */
  watch(key: string, onChange: (v: Versioned<unknown>) => void): () => void;
  close(): Promise<void>;
}

export const PRIMARY_KEY = '/services/kimiclaw/primary';

/** The config center does not answer (network, server, lock held too long): callers retry. */
export class ConfigCenterUnavailable extends Unavailable {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ConfigCenterUnavailable';
  }
}

/** A stored or proposed primary record does not have the expected shape. Not retried. */
export class InvalidPrimaryRecord extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`primary record field "${field}": ${message}`);
    this.name = 'InvalidPrimaryRecord';
  }
}

const RECORD_FIELDS = new Set(['node', 'url', 'epoch', 'since', 'failover']);
const ISO_TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/;

/**
 * Checks that a value is a PrimaryRecord and returns a clean copy (no undefined properties, so
 * it compares equal to its own JSON round trip). Unknown fields are refused: a misspelt
 * "epoc" written by hand must not read as a record without an epoch.
 */
export function parsePrimaryRecord(value: unknown): PrimaryRecord {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidPrimaryRecord('(record)', `must be a JSON object, got ${describeValue(value)}`);
  }
  const input = value as Record<string, unknown>;
  for (const field of Object.keys(input)) {
    if (!RECORD_FIELDS.has(field)) {
      throw new InvalidPrimaryRecord(field, `unknown field (expected ${[...RECORD_FIELDS].join(', ')})`);
    }
  }
  const { node, url, epoch, since, failover } = input;
  if (typeof node !== 'string' || node.trim() === '') {
    throw new InvalidPrimaryRecord('node', `must be a non-empty string, got ${describeValue(node)}`);
  }
  if (typeof url !== 'string' || !isHttpUrl(url)) {
    throw new InvalidPrimaryRecord('url', `must be an http(s) URL, got ${describeValue(url)}`);
  }
  if (typeof epoch !== 'number' || !Number.isSafeInteger(epoch) || epoch < 0) {
    throw new InvalidPrimaryRecord('epoch', `must be a non-negative integer, got ${describeValue(epoch)}`);
  }
  if (typeof since !== 'string' || !ISO_TIMESTAMP.test(since) || Number.isNaN(Date.parse(since))) {
    throw new InvalidPrimaryRecord(
      'since',
      `must be an ISO 8601 timestamp such as 2025-01-31T12:00:00.000Z, got ${describeValue(since)}`,
    );
  }
  if (failover !== undefined && (typeof failover !== 'string' || failover === '')) {
    throw new InvalidPrimaryRecord(
      'failover',
      `must be a non-empty string when present, got ${describeValue(failover)}`,
    );
  }
  return failover === undefined ? { node, url, epoch, since } : { node, url, epoch, since, failover };
}

function isHttpUrl(text: string): boolean {
  try {
    const url = new URL(text);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}

function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  const text = JSON.stringify(value) ?? String(value);
  return `${typeof value} ${text.length > 60 ? `${text.slice(0, 57)}...` : text}`;
}

/**
 * The recorded primary, validated; record is undefined when none was ever recorded. `key` is
 * for deployments that keep one primary per cluster under its own key.
 */
export async function readPrimary(
  center: ConfigCenter,
  key: string = PRIMARY_KEY,
): Promise<{ record?: PrimaryRecord; revision: string }> {
  const { value, revision } = await center.get(key);
  return { record: storedRecord(center, key, value), revision };
}

function storedRecord(center: ConfigCenter, key: string, value: unknown): PrimaryRecord | undefined {
  if (value === undefined) return undefined;
  try {
    return parsePrimaryRecord(value);
  } catch (err) {
    if (err instanceof InvalidPrimaryRecord) {
      err.message = `${center.describe} key ${key}: ${err.message}`;
    }
    throw err;
  }
}

export type CasPrimaryResult = { ok: true } | { ok: false; current?: PrimaryRecord; reason: string };

/** More revision races than this in one call means something rewrites the record in a loop. */
const MAX_CAS_ATTEMPTS = 10;

/**
 * Records `next` as the primary if the stored record still has `expectedEpoch` (undefined: no
 * record yet) and next.epoch is greater than the stored one.
 *
 * Idempotent: when the stored record already equals `next`, this returns ok, so an activity
 * retried after its first attempt's response was lost does not fail on its own write. (Two
 * writers proposing the very same record are indistinguishable; `failover` tells them apart.)
 */
export async function casPrimary(
  center: ConfigCenter,
  expectedEpoch: number | undefined,
  next: PrimaryRecord,
  key: string = PRIMARY_KEY,
): Promise<CasPrimaryResult> {
  const proposed = parsePrimaryRecord(next);
  let state = await center.get(key);
  for (let attempt = 1; ; attempt++) {
    const current = storedRecord(center, key, state.value);
    if (current && isDeepStrictEqual(current, proposed)) return { ok: true };
    const refused = refusal(current, expectedEpoch, proposed);
    if (refused) return { ok: false, current, reason: refused };
    const result = await center.compareAndSwap(key, state.revision, proposed);
    if (result.ok) return { ok: true };
    // Someone wrote between our read and our swap: judge again against what they wrote.
    state = result.current;
    if (attempt >= MAX_CAS_ATTEMPTS) {
      return {
        ok: false,
        current: storedRecord(center, key, state.value),
        reason: `the primary record changed under each of ${MAX_CAS_ATTEMPTS} attempts to replace it`,
      };
    }
  }
}

/** Why `next` may not replace `current`, or undefined when it may. */
function refusal(
  current: PrimaryRecord | undefined,
  expectedEpoch: number | undefined,
  next: PrimaryRecord,
): string | undefined {
  if (current === undefined) {
    return expectedEpoch === undefined ? undefined : `no primary is recorded, but epoch ${expectedEpoch} was expected`;
  }
  const stored = `node ${current.node} at epoch ${current.epoch}`;
  if (expectedEpoch === undefined) return `a primary is already recorded (${stored}), but none was expected`;
  if (current.epoch !== expectedEpoch) return `the recorded primary is ${stored}, not epoch ${expectedEpoch}`;
  if (next.epoch <= current.epoch) {
    return `the new epoch ${next.epoch} must be greater than the recorded epoch ${current.epoch}`;
  }
  return undefined;
}

/** JSON text of a value to store; refuses what JSON cannot carry instead of storing nothing. */
export function encodeValue(key: string, value: unknown): string {
  const text = value === undefined ? undefined : (JSON.stringify(value) as string | undefined);
  if (text === undefined) throw new TypeError(`value for ${key} is not JSON-serialisable (${typeof value})`);
  return text;
}

/** Revision tokens are decimal counters in both implementations; anything else is a caller bug. */
export function checkRevision(expectedRevision: string): bigint {
  if (!/^\d+$/.test(expectedRevision)) {
    throw new TypeError(
      `expectedRevision must be a revision from get() or '0', got ${JSON.stringify(expectedRevision)}`,
    );
  }
  return BigInt(expectedRevision);
}
