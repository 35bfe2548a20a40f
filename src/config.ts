/**
 * The one configuration schema. It is fed by a JSON file (DR_CONFIG, or ./kimiclaw-dr.json when
 * present) and environment variables, which win over the file. A bad config fails at start with
 * every offending field named, before anything connects anywhere.
 */
import { existsSync, readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { DEFAULT_TASK_QUEUE, NameSchema } from './domain';
import { DURATION_UNITS, parseDuration } from './duration';
import { DEFAULT_PRODUCTION_SCENARIOS, DRILL_SCENARIOS, type DrillScenario, PLAN_OBJECTIVES } from './drill/input';
import { NodeToken, TOKEN_RULE, isToken, readTokenFile } from './node-token';

export { TIERS, TierSchema, NameSchema, DEFAULT_TASK_QUEUE } from './domain';
export type { Tier } from './domain';

/** A positive duration such as "90s", "24h", "30d", "7y"; parsed to milliseconds. */
export const PositiveDurationSchema = z.string().transform((text, ctx) => {
  const ms = parseDuration(text);
  if (ms === undefined) {
    ctx.addIssue({
      code: 'custom',
      message: `"${text}" is not a duration; write a number and a unit (${DURATION_UNITS.join(', ')}), e.g. "24h"`,
    });
    return z.NEVER;
  }
  if (ms <= 0) {
    ctx.addIssue({ code: 'custom', message: `"${text}" must be greater than zero` });
    return z.NEVER;
  }
  return ms;
});

const NodeSchema = z.object({
  id: NameSchema,
  url: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL such as http://127.0.0.1:7070' }),
  /** The node's data directory on its own host; snapshots are written inside it. */
  dataDir: z.string().min(1),
  /** Where L1 snapshots are kept on the node's host; defaults to <dataDir>/backups. */
  backupDir: z.string().min(1).optional(),
  /** The task queue of the worker that runs on this node's host. */
  taskQueue: z.string().min(1).optional(),
  /**
   * The failure domain the node's host is in (an availability zone). The synchronous standby is
   * chosen in another zone than the primary's (cluster.syncPlacement). Give every node of a
   * database a zone, or none.
   */
  zone: NameSchema.optional(),
  /** The region the zone is in; a database may keep a standby region (docs/architecture.md). */
  region: NameSchema.optional(),
});

const DatabaseSchema = z.object({
  name: NameSchema,
  nodes: z.array(NodeSchema).min(1, 'list at least one node'),
});

const StorageSchema = z.object({
  /** S3-compatible endpoint; omit for AWS S3. */
  endpoint: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }).optional(),
  region: z.string().min(1).default('us-east-1'),
  bucket: z
    .string()
    .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'must be a valid S3 bucket name (3-63 of a-z, 0-9, ".", "-")'),
  prefix: z
    .string()
    .regex(/^[a-zA-Z0-9._-]+(\/[a-zA-Z0-9._-]+)*$/, 'must be path segments of letters, digits, ".", "_", "-"')
    .default('kimiclaw-dr'),
  accessKeyId: z.string().min(1).optional(),
  secretAccessKey: z.string().min(1).optional(),
  forcePathStyle: z.boolean().default(true),
  /** Storage class per off-site tier; some S3-compatible servers reject archive classes. */
  storageClass: z
    .object({
      L2: z.string().min(1).default('STANDARD'),
      L3: z.string().min(1).default('GLACIER'),
    })
    .prefault({}),
  /** Object Lock mode used for L3 when the bucket has Object Lock enabled. */
  objectLockMode: z.enum(['GOVERNANCE', 'COMPLIANCE']).default('COMPLIANCE'),
  partSizeMiB: z.number().int().min(5).max(5120).default(16),
  uploadConcurrency: z.number().int().min(1).max(64).default(4),
  /** Bandwidth limit of off-site uploads in MiB/s; absent means as fast as the link allows. */
  uploadLimitMiBps: z.number().positive().optional(),
  /** Bandwidth limit of restore downloads in MiB/s; absent means as fast as the link allows. */
  downloadLimitMiBps: z.number().positive().optional(),
  /**
   * A request to the store that receives nothing for this long is abandoned (and retried where the
   * caller retries): a store that hangs must not hang the archiver, a restore or the CLI.
   */
  idleTimeout: PositiveDurationSchema.default(30_000),
});

const RetentionSchema = z
  .object({
    L1: PositiveDurationSchema.default(24 * 3_600_000),
    L2: PositiveDurationSchema.default(30 * 86_400_000),
    L3: PositiveDurationSchema.default(7 * 365 * 86_400_000),
  })
  .prefault({});

const BackupSchema = z
  .object({
    compression: z.enum(['zstd', 'gzip']).default('zstd'),
    /** zstd 1-19 (default 1, see DEFAULT_LEVEL), gzip 1-9 (default 6). */
    level: z.number().int().min(1).max(19).optional(),
    retention: RetentionSchema,
    /** Artifacts without a manifest younger than this are an upload in progress, not garbage. */
    orphanGrace: PositiveDurationSchema.default(6 * 3_600_000),
  })
  .prefault({})
  .superRefine((b, ctx) => {
    if (b.compression === 'gzip' && b.level !== undefined && b.level > 9) {
      ctx.addIssue({ code: 'custom', path: ['level'], message: 'gzip accepts levels 1-9' });
    }
  });

/** When a schedule fires: every N (interval) or cron lines; either may be given, not neither. */
export const ScheduleSpecSchema = z
  .object({
    every: PositiveDurationSchema.optional(),
    /** Offset of an interval, e.g. every "1d" at offset "3h" runs daily at 03:00 UTC. */
    offset: z
      .string()
      .transform((text, ctx) => {
        const ms = parseDuration(text);
        if (ms === undefined || ms < 0) {
          ctx.addIssue({ code: 'custom', message: `"${text}" is not a non-negative duration` });
          return z.NEVER;
        }
        return ms;
      })
      .optional(),
    cron: z.array(z.string().min(1)).min(1).optional(),
    timezone: z.string().min(1).default('UTC'),
    /** Missed runs within this window (e.g. while Temporal was down) still run once. */
    catchupWindow: PositiveDurationSchema.optional(),
    jitter: PositiveDurationSchema.optional(),
    paused: z.boolean().default(false),
  })
  .superRefine((s, ctx) => {
    if (!s.every && !s.cron) {
      ctx.addIssue({ code: 'custom', message: 'give "every" (e.g. "6h") or "cron" (e.g. ["0 */6 * * *"])' });
    }
  });
export type ScheduleSpecConfig = z.infer<typeof ScheduleSpecSchema>;

const SchedulesSchema = z
  .object({
    /** Backup schedules per tier; null turns a tier's schedule off. */
    backup: z
      .object({
        L1: ScheduleSpecSchema.nullable().default({ every: 3_600_000, timezone: 'UTC', paused: false }),
        L2: ScheduleSpecSchema.nullable().default({
          every: 86_400_000,
          offset: 3 * 3_600_000,
          timezone: 'UTC',
          paused: false,
        }),
        L3: ScheduleSpecSchema.nullable().default({ cron: ['0 4 1 * *'], timezone: 'UTC', paused: false }),
      })
      .prefault({}),
    /**
     * The quarterly drill (03:00 UTC on the first day of Jan/Apr/Jul/Oct): the scenarios
     * drills.production.scenarios allows, on the replicated cluster, confirmed by this config.
     * A short catch-up window: a drill missed while Temporal was down (an outage) is skipped,
     * not run right after it. null turns it off.
     */
    drill: ScheduleSpecSchema.nullable().default({
      cron: ['0 3 1 1,4,7,10 *'],
      timezone: 'UTC',
      catchupWindow: 3_600_000,
      paused: false,
    }),
    /** Restore tests: the newest L2 weekly, the newest L3 monthly, into a scratch location. */
    restoreTest: z
      .object({
        L2: ScheduleSpecSchema.nullable().default({ cron: ['0 5 * * 0'], timezone: 'UTC', paused: false }),
        L3: ScheduleSpecSchema.nullable().default({ cron: ['0 6 2 * *'], timezone: 'UTC', paused: false }),
      })
      .prefault({}),
  })
  .prefault({});

const TemporalSchema = z
  .object({
    /** host:port of a Temporal frontend; absent means `start` runs an embedded dev server. */
    address: z.string().min(1).optional(),
    namespace: z.string().min(1).default('default'),
    taskQueue: z.string().min(1).default(DEFAULT_TASK_QUEUE),
    tls: z.boolean().default(false),
    apiKey: z.string().min(1).optional(),
    /** Port of the embedded dev server's Web UI. */
    uiPort: z.number().int().min(1).max(65535).default(8233),
  })
  .prefault({});

const ArchiveSchema = z
  .object({
    /** New events are sealed into a segment at least this often while a node is primary. */
    interval: PositiveDurationSchema.default(10_000),
    /** Largest segment, in events; a backlog is archived as several segments. */
    segmentMaxEvents: z.number().int().min(1).max(1_000_000).default(100_000),
  })
  .prefault({});

const WebhookSchema = z.object({
  url: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL such as https://hooks.example.com/kimiclaw' }),
  /** HMAC-SHA256 key: receivers verify x-kimiclaw-signature with it. */
  secret: z.string().min(1).optional(),
  name: z.string().min(1).optional(),
});

const EtcdUrlSchema = z.url({
  protocol: /^https?$/,
  error: 'must be an etcd client URL such as http://127.0.0.1:2379',
});

/** An etcd member: its client URL, or the URL with the zone (and region) the member runs in. */
const EtcdEndpointSchema = z.union([
  EtcdUrlSchema,
  z.object({ url: EtcdUrlSchema, zone: NameSchema.optional(), region: NameSchema.optional() }),
]);
export type EtcdEndpoint = z.infer<typeof EtcdEndpointSchema>;

/** The client URL of an etcd endpoint as configured. */
export const etcdUrl = (e: EtcdEndpoint): string => (typeof e === 'string' ? e : e.url);

const ConfigCenterSchema = z
  .discriminatedUnion(
    'kind',
    [
      z.object({
        kind: z.literal('etcd'),
        /** Every member: clients try each in turn and stay with the one that answered last. */
        endpoints: z.array(EtcdEndpointSchema).min(1, 'list at least one etcd endpoint'),
        timeoutMs: z.number().int().min(100).max(60_000).default(2_000),
      }),
      z.object({
        kind: z.literal('file'),
        /** The single-host default: one JSON file beside the data. */
        path: z.string().min(1).default('.data/config-center.json'),
      }),
    ],
    { error: 'must be { "kind": "etcd", "endpoints": [...] } or { "kind": "file", "path"?: string }' },
  )
  .prefault({ kind: 'file' });

/**
 * Failover (issue: zero-loss automatic failover). A database with several nodes is a cluster:
 * its name is the cluster's name, its first node the initial primary, the others its replicas.
 */
const ClusterSchema = z
  .object({
    configCenter: ConfigCenterSchema,
    /** How often monitorCluster probes every node. */
    probeInterval: PositiveDurationSchema.default(500),
    /** Consecutive failed probes of the primary before it is suspected. */
    failureThreshold: z.number().int().min(1).max(100).default(3),
    /** The replica's vantage point: it must not have heard from the primary for this long. */
    replicaSilence: PositiveDurationSchema.default(1_000),
    /** Replicas that acknowledge each write before the client is answered (the rest are async). */
    syncReplicas: z.number().int().min(0).max(8).default(1),
    /**
     * Where the synchronous standby may be, when nodes have zones: "prefer-other-zone" takes one
     * in another zone than the primary's whenever one is in sync, else one in the primary's zone
     * (recorded as such) before any degraded mode; "require-other-zone" never takes one in the
     * primary's zone (writes wait or degrade instead); "any" ignores zones.
     */
    syncPlacement: z.enum(['prefer-other-zone', 'require-other-zone', 'any']).default('prefer-other-zone'),
    /**
     * When the synchronous replica is gone: "degrade" keeps writes flowing on the primary alone
     * (recorded in the config center first, so a failover meanwhile refuses to promote a replica
     * that may lack acknowledged writes); "block" holds writes until a replica is back (RPO 0 always).
     */
    whenSyncReplicaDown: z.enum(['degrade', 'block']).default('degrade'),
    /** How long the primary must be without an in-sync synchronous replica before degrading. */
    degradeAfter: PositiveDurationSchema.default(2_000),
    /**
     * The topology lease: one failover, switchover, restore or rebuild of a cluster at a time. Its
     * holder renews it every ttl/3; a holder that died loses it after `ttl`. A failover finding it
     * held waits up to `failoverWait` for it (every other operation is refused at once).
     */
    lease: z
      .object({
        ttl: PositiveDurationSchema.default(15_000),
        failoverWait: PositiveDurationSchema.default(60_000),
      })
      .prefault({}),
    webhooks: z.array(WebhookSchema).default([]),
  })
  .prefault({});

/**
 * The credential sent to kimiclaw nodes (docs/node-api.md, "Authentication"): a control token the
 * nodes accept. `tokenFile` is read when the config is loaded (the node's token file format, the
 * first token is sent); `token` is meant for the environment (KIMICLAW_NODE_TOKEN). Neither: calls
 * go without a credential, which only a node run with --insecure-no-auth accepts.
 */
const NodeAuthSchema = z
  .object({
    tokenFile: z.string().min(1).optional(),
    token: z
      .string()
      .refine(isToken, TOKEN_RULE)
      .transform((t) => new NodeToken(t))
      .optional(),
  })
  .refine((a) => !(a.token && a.tokenFile), 'give "token" or "tokenFile", not both')
  .prefault({});

/**
 * Regions: the one the cluster runs in and standby regions, each with its own object store, to
 * which every artifact, manifest and log segment is copied as it is sealed (docs/architecture.md,
 * "Regions"). The top-level `storage` is the primary region's store.
 */
const RegionsSchema = z
  .object({
    primary: NameSchema,
    standby: z
      .array(
        z.object({
          name: NameSchema,
          storage: StorageSchema,
          /** How often new objects are looked for and copied. */
          copyInterval: PositiveDurationSchema.default(10_000),
        }),
      )
      .default([]),
  })
  .optional();

/**
 * Drills (docs/architecture.md, "Drills"): which scenarios a production drill may run, and the
 * objectives a drill measures against per scenario (default: the DR plan's table).
 */
const DrillsSchema = z
  .object({
    /** How long a drill may try to heal the cluster back to its starting topology before it fails loudly. */
    healDeadline: PositiveDurationSchema.default(10 * 60_000),
    production: z
      .object({
        scenarios: z
          .array(z.enum(DRILL_SCENARIOS, { error: `must be one of: ${DRILL_SCENARIOS.join(', ')}` }))
          .default([...DEFAULT_PRODUCTION_SCENARIOS]),
      })
      .prefault({}),
    objectives: z
      .partialRecord(
        z.enum(DRILL_SCENARIOS, { error: `must be one of: ${DRILL_SCENARIOS.join(', ')}` }),
        z.strictObject({
          rto: PositiveDurationSchema.optional(),
          rpo: z.union([z.literal('0'), PositiveDurationSchema]).optional(),
        }),
      )
      .default({})
      .transform((given) => {
        const out = { ...PLAN_OBJECTIVES };
        for (const [s, o] of Object.entries(given) as Array<[DrillScenario, { rto?: number; rpo?: number | '0' }]>) {
          out[s] = { rtoMs: o.rto ?? out[s].rtoMs, rpoMs: o.rpo === '0' ? 0 : (o.rpo ?? out[s].rpoMs) };
        }
        return out;
      }),
  })
  .prefault({});

const MetricsSchema = z
  .object({
    host: z.string().min(1).default('127.0.0.1'),
    port: z.number().int().min(0).max(65535).default(9464),
  })
  .prefault({});

const ConfigShape = z.object({
  temporal: TemporalSchema,
  storage: StorageSchema,
  databases: z.array(DatabaseSchema).min(1, 'list at least one database'),
  backup: BackupSchema,
  schedules: SchedulesSchema,
  archive: ArchiveSchema,
  cluster: ClusterSchema,
  metrics: MetricsSchema,
  nodeAuth: NodeAuthSchema,
  regions: RegionsSchema,
  drills: DrillsSchema,
  /**
   * The region this worker (or CLI) runs in (env DR_REGION); default: the primary region. A
   * standby region's worker reaches that region's object store as its `storage`, and its monitor
   * stands down while the cluster's primary is in another region (docs/architecture.md, "Regions").
   */
  region: NameSchema.optional(),
});

export const ConfigSchema = ConfigShape.superRefine(
  (c, ctx) => {
    const seen = new Set<string>();
    // With `when`, this also runs on input that failed elsewhere: entries may be anything.
    (c.databases as unknown[]).forEach((db, i) => {
      const name = (db as { name?: unknown } | null)?.name;
      if (typeof name !== 'string') return;
      if (seen.has(name)) {
        ctx.addIssue({ code: 'custom', path: ['databases', i, 'name'], message: `"${name}" is listed twice` });
      }
      seen.add(name);
    });
  },
  // Report duplicates even when other fields are bad too: every problem in one message.
  { when: (payload) => Array.isArray((payload.value as { databases?: unknown } | undefined)?.databases) },
)
  .superRefine((c, ctx) => {
    for (const problem of topologyProblems(c)) ctx.addIssue({ code: 'custom', ...problem });
  })
  .transform((c) => {
    // A standby region's worker keeps its backups and reads its restores in its own region's store.
    const standby = c.regions?.standby.find((r) => r.name === c.region);
    return standby ? { ...c, storage: standby.storage } : c;
  });

/** The region a worker runs in: `region`, else the declared primary region; undefined without regions. */
export function homeRegion(config: Pick<Config, 'region' | 'regions'>): string | undefined {
  return config.region ?? config.regions?.primary;
}

/**
 * A topology no node placement can satisfy, or one that a single zone's loss breaks: every node
 * of a database zoned or none; a synchronous standby requirement the nodes can meet; an etcd
 * cluster whose majority does not sit in one zone.
 */
function topologyProblems(c: z.output<typeof ConfigShape>): Array<{ path: PropertyKey[]; message: string }> {
  const problems: Array<{ path: PropertyKey[]; message: string }> = [];
  const { syncReplicas, syncPlacement, configCenter } = c.cluster;
  c.databases.forEach((db, i) => {
    if (db.nodes.length < 2) return;
    const zoned = db.nodes.filter((n) => n.zone !== undefined);
    if (zoned.length > 0 && zoned.length < db.nodes.length) {
      const missing = db.nodes.filter((n) => n.zone === undefined).map((n) => n.id);
      problems.push({
        path: ['databases', i, 'nodes'],
        message: `give every node of database "${db.name}" a zone, or none (no zone: ${missing.join(', ')})`,
      });
    }
    if (syncReplicas > db.nodes.length - 1) {
      problems.push({
        path: ['cluster', 'syncReplicas'],
        message: `${syncReplicas} synchronous standbys cannot be met by database "${db.name}", which has ${db.nodes.length} nodes (at most ${db.nodes.length - 1})`,
      });
    }
    if (syncPlacement === 'require-other-zone' && syncReplicas > 0 && zoned.length === db.nodes.length) {
      // Every node may become primary: each needs syncReplicas standbys outside its own zone.
      for (const node of db.nodes) {
        const outside = db.nodes.filter((n) => n.zone !== node.zone).length;
        if (outside < syncReplicas) {
          problems.push({
            path: ['cluster', 'syncPlacement'],
            message: `"require-other-zone" cannot be met when ${node.id} (zone ${node.zone}) of database "${db.name}" is primary: ${outside} node(s) outside its zone for ${syncReplicas} synchronous standby(s); add a node in another zone or use "prefer-other-zone"`,
          });
          break;
        }
      }
    }
    if (syncPlacement === 'require-other-zone' && zoned.length === 0 && syncReplicas > 0) {
      problems.push({
        path: ['cluster', 'syncPlacement'],
        message: `"require-other-zone" needs every node of database "${db.name}" to have a zone`,
      });
    }
  });
  if (c.region !== undefined && !c.regions) {
    problems.push({
      path: ['region'],
      message: `"${c.region}" names a region, but no regions are declared (declare them under "regions")`,
    });
  }
  if (c.regions) {
    const names = [c.regions.primary, ...c.regions.standby.map((r) => r.name)];
    if (c.region !== undefined && !names.includes(c.region)) {
      problems.push({
        path: ['region'],
        message: `"${c.region}" is not a declared region (accepted: ${names.map((x) => `"${x}"`).join(', ')})`,
      });
    }
    c.regions.standby.forEach((r, i) => {
      if (names.indexOf(r.name) !== i + 1) {
        problems.push({
          path: ['regions', 'standby', i, 'name'],
          message: `region "${r.name}" is declared twice (the primary region is "${c.regions!.primary}")`,
        });
      }
    });
    c.databases.forEach((db, i) =>
      db.nodes.forEach((n, j) => {
        if (n.region !== undefined && !names.includes(n.region)) {
          problems.push({
            path: ['databases', i, 'nodes', j, 'region'],
            message: `"${n.region}" is not a declared region (accepted: ${names.map((x) => `"${x}"`).join(', ')})`,
          });
        }
      }),
    );
  }
  if (configCenter.kind === 'etcd') {
    const members = configCenter.endpoints;
    const zones = members.map((e) => (typeof e === 'string' ? undefined : e.zone));
    if (members.length > 1 && zones.every((z) => z !== undefined)) {
      const count = new Map<string, number>();
      for (const z of zones) count.set(z!, (count.get(z!) ?? 0) + 1);
      const majority = Math.floor(members.length / 2) + 1;
      for (const [zone, n] of count) {
        if (n >= majority) {
          problems.push({
            path: ['cluster', 'configCenter', 'endpoints'],
            message: `zone ${zone} holds ${n} of the ${members.length} etcd members, a majority: losing zone ${zone} loses the config center; put one member per zone (a witness member in a third zone)`,
          });
        }
      }
    }
  }
  return problems;
}

export type Config = z.infer<typeof ConfigSchema>;
export type ConfigInput = z.input<typeof ConfigSchema>;
export type DatabaseConfig = Config['databases'][number];
export type NodeConfig = DatabaseConfig['nodes'][number];
export type StandbyRegionConfig = NonNullable<Config['regions']>['standby'][number];

export class ConfigError extends Error {
  constructor(
    readonly problems: string[],
    source: string,
  ) {
    super(`invalid configuration (${source}):\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** Lists every problem of a zod error as "field.path: message". */
export function describeZodIssues(error: z.ZodError, fieldOrigin: (path: string) => string = (p) => p): string[] {
  return error.issues.map((issue) => {
    const path = issue.path.map(String).join('.');
    const accepted =
      issue.code === 'invalid_value' && 'values' in issue
        ? ` (accepted: ${issue.values.map((v) => JSON.stringify(v)).join(', ')})`
        : '';
    return `${path ? fieldOrigin(path) : '(root)'}: ${issue.message}${accepted}`;
  });
}

/** Environment variables and the config field each one sets. */
const ENV_FIELDS: Array<{ env: string; path: string[]; kind: 'string' | 'boolean' | 'number' }> = [
  { env: 'TEMPORAL_ADDRESS', path: ['temporal', 'address'], kind: 'string' },
  { env: 'TEMPORAL_NAMESPACE', path: ['temporal', 'namespace'], kind: 'string' },
  { env: 'TEMPORAL_API_KEY', path: ['temporal', 'apiKey'], kind: 'string' },
  { env: 'TEMPORAL_TLS', path: ['temporal', 'tls'], kind: 'boolean' },
  { env: 'DR_TASK_QUEUE', path: ['temporal', 'taskQueue'], kind: 'string' },
  { env: 'S3_ENDPOINT', path: ['storage', 'endpoint'], kind: 'string' },
  { env: 'S3_REGION', path: ['storage', 'region'], kind: 'string' },
  { env: 'S3_BUCKET', path: ['storage', 'bucket'], kind: 'string' },
  { env: 'S3_PREFIX', path: ['storage', 'prefix'], kind: 'string' },
  { env: 'S3_FORCE_PATH_STYLE', path: ['storage', 'forcePathStyle'], kind: 'boolean' },
  { env: 'AWS_ACCESS_KEY_ID', path: ['storage', 'accessKeyId'], kind: 'string' },
  { env: 'AWS_SECRET_ACCESS_KEY', path: ['storage', 'secretAccessKey'], kind: 'string' },
  { env: 'DR_METRICS_PORT', path: ['metrics', 'port'], kind: 'number' },
  { env: 'DR_REGION', path: ['region'], kind: 'string' },
];

/** ETCD_ENDPOINTS=http://a:2379,http://b:2379 selects etcd as the config center. */
function etcdFromEnv(env: NodeJS.ProcessEnv, raw: Record<string, unknown>, fromEnv: Map<string, string>): void {
  const endpoints = env.ETCD_ENDPOINTS?.split(',')
    .map((e) => e.trim())
    .filter(Boolean);
  if (!endpoints?.length) return;
  setPath(raw, ['cluster', 'configCenter'], { kind: 'etcd', endpoints });
  fromEnv.set('cluster.configCenter', 'ETCD_ENDPOINTS');
}

/** KIMICLAW_NODE_TOKEN or KIMICLAW_NODE_TOKEN_FILE replaces what the file says of nodeAuth. */
function nodeAuthFromEnv(env: NodeJS.ProcessEnv, raw: Record<string, unknown>, fromEnv: Map<string, string>): void {
  const token = env.KIMICLAW_NODE_TOKEN || undefined;
  const tokenFile = env.KIMICLAW_NODE_TOKEN_FILE || undefined;
  if (!token && !tokenFile) return;
  setPath(raw, ['nodeAuth'], { token, tokenFile });
  if (token) fromEnv.set('nodeAuth.token', 'KIMICLAW_NODE_TOKEN');
  if (tokenFile) fromEnv.set('nodeAuth.tokenFile', 'KIMICLAW_NODE_TOKEN_FILE');
  if (token && tokenFile) fromEnv.set('nodeAuth', 'KIMICLAW_NODE_TOKEN and KIMICLAW_NODE_TOKEN_FILE');
}

function setPath(target: Record<string, unknown>, path: string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (typeof next !== 'object' || next === null) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1] as string] = value;
}

function envValue(raw: string, kind: 'string' | 'boolean' | 'number'): unknown {
  if (kind === 'boolean') return raw === 'true' || raw === '1' ? true : raw === 'false' || raw === '0' ? false : raw;
  if (kind === 'number') return /^\d+$/.test(raw) ? Number(raw) : raw;
  return raw;
}

/** Validates a config object; throws ConfigError naming every bad field. */
export function parseConfig(input: unknown, source = 'config'): Config {
  const result = ConfigSchema.safeParse(input);
  if (!result.success) throw new ConfigError(describeZodIssues(result.error), source);
  return readNodeToken(result.data, process.cwd(), source);
}

export interface LoadConfigOptions {
  /** Path of the JSON file; defaults to DR_CONFIG, then ./kimiclaw-dr.json, then .data/kimiclaw-dr.json. */
  file?: string;
  env?: NodeJS.ProcessEnv;
  /** Values under the file and env, e.g. the embedded single-host defaults of `start`. */
  defaults?: ConfigInput;
}

/** Where `start` writes the effective config, so later CLI calls on this host find it. */
export const EMBEDDED_CONFIG_FILE = '.data/kimiclaw-dr.json';

export interface RawConfig {
  raw: Record<string, unknown>;
  file?: string;
  /** Config paths set from the environment, with the variable's name. */
  fromEnv: Map<string, string>;
}

/** The file and the environment merged, not yet validated (`start` fills in what is missing). */
export function loadRawConfig(options: LoadConfigOptions = {}): RawConfig {
  const env = options.env ?? process.env;
  const file = options.file ?? env.DR_CONFIG ?? ['kimiclaw-dr.json', EMBEDDED_CONFIG_FILE].find((f) => existsSync(f));
  let raw: Record<string, unknown> = structuredClone((options.defaults ?? {}) as Record<string, unknown>);
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError([`cannot read ${file}: ${(err as Error).message}`], file);
    }
    try {
      raw = mergeDeep(raw, JSON.parse(text) as Record<string, unknown>);
    } catch (err) {
      throw new ConfigError([`${file} is not valid JSON: ${(err as Error).message}`], file);
    }
  }
  const fromEnv = new Map<string, string>();
  for (const { env: name, path, kind } of ENV_FIELDS) {
    const value = env[name];
    if (value === undefined || value === '') continue;
    setPath(raw, path, envValue(value, kind));
    fromEnv.set(path.join('.'), name);
  }
  etcdFromEnv(env, raw, fromEnv);
  nodeAuthFromEnv(env, raw, fromEnv);
  return { raw, file, fromEnv };
}

/** Validates merged config; errors name env-sourced fields with their variable. */
export function validateConfig({ raw, file, fromEnv }: RawConfig): Config {
  const result = ConfigSchema.safeParse(raw);
  const source = [file, fromEnv.size ? 'environment' : undefined].filter(Boolean).join(' + ') || 'defaults';
  if (!result.success) {
    throw new ConfigError(
      describeZodIssues(result.error, (p) => (fromEnv.has(p) ? `${p} (env ${fromEnv.get(p)})` : p)),
      source,
    );
  }
  const base = file ? resolve(file, '..') : process.cwd();
  return readNodeToken(resolvePaths(result.data, base), base, source, fromEnv);
}

/** Reads the file and the environment and validates the result. */
export function loadConfig(options: LoadConfigOptions = {}): Config {
  return validateConfig(loadRawConfig(options));
}

function mergeDeep(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(over)) {
    const prev = out[key];
    out[key] =
      isPlainObject(prev) && isPlainObject(value)
        ? mergeDeep(prev as Record<string, unknown>, value as Record<string, unknown>)
        : value;
  }
  return out;
}

function isPlainObject(v: unknown): boolean {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function resolvePaths(config: Config, base: string): Config {
  for (const db of config.databases) {
    for (const node of db.nodes) {
      if (!isAbsolute(node.dataDir)) node.dataDir = resolve(base, node.dataDir);
      if (node.backupDir && !isAbsolute(node.backupDir)) node.backupDir = resolve(base, node.backupDir);
    }
  }
  return config;
}

/** Reads nodeAuth.tokenFile at load, so a missing or bad file fails at start, naming the field. */
function readNodeToken(config: Config, base: string, source: string, fromEnv = new Map<string, string>()): Config {
  const file = config.nodeAuth.tokenFile;
  if (file === undefined) return config;
  const path = isAbsolute(file) ? file : resolve(base, file);
  try {
    config.nodeAuth = { tokenFile: path, token: new NodeToken(readTokenFile(path)[0]!) };
  } catch (err) {
    const env = fromEnv.get('nodeAuth.tokenFile');
    throw new ConfigError([`nodeAuth.tokenFile${env ? ` (env ${env})` : ''}: ${(err as Error).message}`], source);
  }
  return config;
}

/** The task queue of the worker that owns a node's disk. */
export function nodeTaskQueue(config: Config, node: NodeConfig): string {
  return node.taskQueue ?? `${config.temporal.taskQueue}-node-${node.id}`;
}

/** Where a node's L1 snapshots are kept. */
export function nodeBackupDir(node: NodeConfig): string {
  return node.backupDir ?? resolve(node.dataDir, 'backups');
}
