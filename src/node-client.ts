/**
 * A typed client for the kimiclaw node's HTTP API (docs/node-api.md). Errors say which node did
 * not answer and why, and whether waiting could help. Every call carries the configured
 * credential (config nodeAuth); a refused one is a config problem, not worth a retry.
 */
import { z } from 'zod';
import { FINGERPRINT_VERSIONS } from './duckdb/row-checksum';
import { ConfigProblem, InputProblem, NodeDamaged, Unavailable, networkErrorCode } from './errors';
import type { NodeToken } from './node-token';

const HealthSchema = z.object({
  status: z.string(),
  node: z.string(),
  database: z.string(),
  role: z.string(),
  epoch: z.number(),
  lsn: z.number(),
  rows: z.number(),
  /** Where each primary epoch this node knows of began (docs/node-api.md, replication). */
  history: z.array(z.object({ epoch: z.number(), startLsn: z.number() })).default([]),
  /** false unless status is ok or maintenance: the write path fails or there is no database. */
  writable: z.boolean().optional(),
  /** Why a damaged or unwritable node is so. */
  damage: z
    .object({
      reason: z.string(),
      detectedBy: z.enum(['open', 'scrub', 'read', 'write', 'checkpoint']),
      at: z.string(),
    })
    .optional(),
  /** The highest LSN the node knows to be acknowledged; a node that does not say cannot prove any. */
  ackedLsn: z.number().optional(),
  disk: z.object({ path: z.string(), freeBytes: z.number(), totalBytes: z.number(), low: z.boolean() }).optional(),
  scrub: z
    .object({
      lastRunAt: z.string().nullable(),
      lastDurationMs: z.number().nullable(),
      bytesChecked: z.number(),
      ok: z.boolean().nullable(),
      nextAt: z.string().nullable(),
      error: z.string().optional(),
    })
    .optional(),
});
export type NodeHealth = z.infer<typeof HealthSchema>;

const InitializeSchema = z.object({ role: z.enum(['primary', 'replica']), epoch: z.number(), lsn: z.number() }).loose();

const AsideSchema = z.object({
  path: z.string(),
  retentionMs: z.number(),
  aside: z.array(
    z.object({
      name: z.string(),
      path: z.string(),
      bytes: z.number(),
      movedAt: z.string(),
      reason: z.string(),
      expiresAt: z.string(),
    }),
  ),
});
export type NodeAside = z.infer<typeof AsideSchema>;

const FingerprintFields = {
  rows: z.number(),
  minId: z.number().nullable(),
  maxId: z.number().nullable(),
  maxLsn: z.number().nullable(),
  checksum: z.string(),
  /** A node that does not say computes version 1 (docs/fingerprint.md). */
  fingerprintVersion: z.literal(FINGERPRINT_VERSIONS).default(1),
};

const StatsSchema = z.object({
  node: z.string(),
  database: z.string(),
  lsn: z.number(),
  bytes: z.number(),
  maxWriteStallMs: z.number().optional(),
  ...FingerprintFields,
});
export type NodeStats = z.infer<typeof StatsSchema>;

const SnapshotSchema = z.object({
  path: z.string(),
  lsn: z.number(),
  bytes: z.number(),
  stallMs: z.number(),
  durationMs: z.number(),
  /** The epoch of the history the snapshot's LSN belongs to (a node that does not say: unknown). */
  epoch: z.number().optional(),
  ...FingerprintFields,
});
export type NodeSnapshot = z.infer<typeof SnapshotSchema>;

const AppendSchema = z.object({ lsn: z.number(), firstId: z.number(), lastId: z.number(), count: z.number() });
export type AppendResult = z.infer<typeof AppendSchema>;

const EventsPageSchema = z.object({
  events: z.array(z.object({ id: z.number(), lsn: z.number(), ts: z.string(), kind: z.string(), payload: z.string() })),
  fromLsn: z.number(),
  lastLsn: z.number(),
  headLsn: z.number(),
  more: z.boolean(),
});
export type EventsPage = z.infer<typeof EventsPageSchema>;

const MaintenanceSchema = z
  .object({ status: z.string(), lsn: z.number().optional(), fingerprint: z.object(FingerprintFields).optional() })
  .loose();

const PromoteSchema = z.object({ epoch: z.number(), lsn: z.number() }).loose();
const DemoteSchema = z.object({ role: z.string(), epoch: z.number(), lsn: z.number(), drained: z.boolean() }).loose();
const ReplicationStatusSchema = z.object({ role: z.string(), epoch: z.number() }).loose();

type ReplicaSpec = { id: string; url: string; mode: 'sync' | 'async' };
type NodeRef = { id: string; url: string };

const ErrorSchema = z.object({
  error: z.object({ code: z.string(), message: z.string(), field: z.string().optional() }),
});

export class NodeClient {
  constructor(
    readonly nodeId: string,
    readonly url: string,
    /** config.nodeAuth.token; undefined only against a node run with --insecure-no-auth. */
    private readonly token: NodeToken | undefined,
    private readonly timeoutMs = 10_000,
  ) {}

  health(): Promise<NodeHealth> {
    return this.call('GET', '/health', undefined, HealthSchema);
  }

  stats(upToLsn?: number): Promise<NodeStats> {
    return this.call('GET', upToLsn === undefined ? '/stats' : `/stats?lsn=${upToLsn}`, undefined, StatsSchema);
  }

  /** Asks the node to write a consistent copy of its live database to `path` on its own disk. */
  snapshot(path: string, timeoutMs = 30 * 60_000): Promise<NodeSnapshot> {
    return this.call('POST', '/snapshot', { path }, SnapshotSchema, timeoutMs);
  }

  /** Committed events after an LSN, whole batches only (the table is its own log). */
  events(afterLsn: number, limit: number, toLsn?: number): Promise<EventsPage> {
    const query = `/events?afterLsn=${afterLsn}&limit=${limit}${toLsn === undefined ? '' : `&toLsn=${toLsn}`}`;
    return this.call('GET', query, undefined, EventsPageSchema, 60_000);
  }

  /** Maintenance closes the node's database file (restore swaps it) and refuses writes. */
  maintenance(enabled: boolean, reason?: string): Promise<z.infer<typeof MaintenanceSchema>> {
    return this.call('POST', '/maintenance', { enabled, ...(reason ? { reason } : {}) }, MaintenanceSchema, 120_000);
  }

  append(events: Array<{ kind: string; payload: unknown }>): Promise<AppendResult> {
    return this.call('POST', '/events', { events }, AppendSchema);
  }

  /** Makes the node primary of `epoch`, replicating to `replicas` (docs/node-api.md, fencing). */
  promote(body: { epoch: number; replicas: ReplicaSpec[]; allowDegraded: boolean; startLsn?: number }) {
    return this.call('POST', '/promote', body, PromoteSchema);
  }

  /** Steps the node down at `epoch`: replica of `primary`, or fenced without one. */
  demote(body: { epoch: number; primary?: NodeRef; drainMs?: number }, timeoutMs = this.timeoutMs) {
    return this.call('POST', '/demote', body, DemoteSchema, timeoutMs);
  }

  /** On the primary of `epoch`: its replicas, or whether it may acknowledge without one. */
  setReplication(body: { epoch: number; replicas?: ReplicaSpec[]; allowDegraded?: boolean; bootstrap?: string[] }) {
    return this.call('POST', '/replication', body, ReplicationStatusSchema);
  }

  /** An empty node creates its database in this role (docs/node-api.md, POST /initialize). */
  initialize(body: { role: 'primary' | 'replica'; epoch: number }) {
    return this.call('POST', '/initialize', body, InitializeSchema);
  }

  /** The files the node moved aside (rebuilds, restores), kept until their expiry. */
  aside(): Promise<NodeAside> {
    return this.call('GET', '/aside', undefined, AsideSchema);
  }

  private async call<T>(
    method: string,
    path: string,
    body: unknown,
    schema: z.ZodType<T>,
    timeoutMs = this.timeoutMs,
  ): Promise<T> {
    const what = `node ${this.nodeId} at ${this.url}`;
    let response: Response;
    try {
      response = await fetch(new URL(path, this.url), {
        method,
        headers: {
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          ...(this.token ? { authorization: this.token.authorization() } : {}),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      const code = networkErrorCode(err) ?? (err as Error).name;
      throw new Unavailable(`waiting for ${what} to answer ${method} ${path}: ${code}`, { cause: err });
    }
    const text = await response.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new Error(
        `${what} answered ${method} ${path} with HTTP ${response.status} and no JSON: ${text.slice(0, 200)}`,
      );
    }
    if (!response.ok) {
      const parsed = ErrorSchema.safeParse(json);
      const message = parsed.success ? parsed.data.error.message : text.slice(0, 300);
      if (response.status === 401 || response.status === 403) {
        const sent = this.token ? 'the configured credential' : 'no credential';
        throw new ConfigProblem(
          'nodeAuth',
          `${what} refused ${sent} (HTTP ${response.status}: ${message}); set nodeAuth.tokenFile or KIMICLAW_NODE_TOKEN to a control token the node accepts`,
        );
      }
      if (parsed.success && parsed.data.error.code === 'Damaged') {
        throw new NodeDamaged(this.nodeId, `${what} refused ${method} ${path}: ${message}`);
      }
      if (response.status >= 400 && response.status < 500 && parsed.success) {
        throw new InputProblem(parsed.data.error.field ?? parsed.data.error.code, `${what} refused: ${message}`);
      }
      throw new Unavailable(`waiting for ${what}: ${method} ${path} answered HTTP ${response.status}: ${message}`);
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) {
      throw new Error(`${what} answered ${method} ${path} with an unexpected shape: ${parsed.error.message}`);
    }
    return parsed.data;
  }
}
