import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  ConfigError,
  loadConfig,
  nodeBackupDir,
  nodeTaskQueue,
  parseConfig,
  type Config,
  type ConfigInput,
} from '../../src/config';

const HOUR = 3_600_000;
const DAY = 86_400_000;

function node(id = 'n1', extra: Record<string, unknown> = {}) {
  return { id, url: 'http://127.0.0.1:7070', dataDir: '/var/lib/kimiclaw', ...extra };
}

function minimal(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { storage: { bucket: 'my-bucket' }, databases: [{ name: 'kimiclaw', nodes: [node()] }], ...extra };
}

/** The problems of the ConfigError that parsing throws; fails when parsing succeeds. */
function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.equal(err.name, 'ConfigError');
    return err.problems;
  }
  assert.fail('expected a ConfigError');
}

void describe('parseConfig defaults', () => {
  const config: Config = parseConfig(minimal());

  void test('retention is 24h / 30d / 7y', () => {
    assert.deepEqual(config.backup.retention, { L1: 24 * HOUR, L2: 30 * DAY, L3: 7 * 365 * DAY });
  });

  void test('schedules: L1 hourly, L2 daily at 03:00 UTC, L3 monthly cron', () => {
    assert.deepEqual(config.schedules.backup.L1, { every: HOUR, timezone: 'UTC', paused: false });
    assert.deepEqual(config.schedules.backup.L2, { every: DAY, offset: 3 * HOUR, timezone: 'UTC', paused: false });
    assert.deepEqual(config.schedules.backup.L3, { cron: ['0 4 1 * *'], timezone: 'UTC', paused: false });
  });

  void test('backup, storage, temporal and metrics defaults', () => {
    assert.equal(config.backup.compression, 'zstd');
    assert.equal(config.backup.level, undefined);
    assert.equal(config.backup.orphanGrace, 6 * HOUR);
    assert.equal(config.storage.region, 'us-east-1');
    assert.equal(config.storage.prefix, 'kimiclaw-dr');
    assert.equal(config.storage.forcePathStyle, true);
    assert.deepEqual(config.storage.storageClass, { L2: 'STANDARD', L3: 'GLACIER' });
    assert.equal(config.storage.objectLockMode, 'COMPLIANCE');
    assert.equal(config.storage.partSizeMiB, 16);
    assert.equal(config.storage.uploadConcurrency, 4);
    assert.equal(config.storage.uploadLimitMiBps, undefined);
    assert.deepEqual(config.temporal, { namespace: 'default', taskQueue: 'kimiclaw-dr', tls: false, uiPort: 8233 });
    assert.deepEqual(config.metrics, { host: '127.0.0.1', port: 9464 });
  });

  void test('durations in the file are parsed to milliseconds', () => {
    const c = parseConfig(
      minimal({
        backup: { retention: { L1: '48h', L3: '10y' }, orphanGrace: '90m' },
        schedules: { backup: { L1: { every: '6h', offset: '15m', jitter: '30s', catchupWindow: '2h' } } },
      }),
    );
    assert.deepEqual(c.backup.retention, { L1: 48 * HOUR, L2: 30 * DAY, L3: 3_650 * DAY });
    assert.equal(c.backup.orphanGrace, 90 * 60_000);
    assert.deepEqual(c.schedules.backup.L1, {
      every: 6 * HOUR,
      offset: 15 * 60_000,
      jitter: 30_000,
      catchupWindow: 2 * HOUR,
      timezone: 'UTC',
      paused: false,
    });
  });

  void test('a tier schedule set to null stays null; an offset of 0 is allowed', () => {
    const c = parseConfig(minimal({ schedules: { backup: { L3: null, L1: { every: '1h', offset: '0s' } } } }));
    assert.equal(c.schedules.backup.L3, null);
    assert.equal(c.schedules.backup.L1?.offset, 0);
  });

  void test('nodeTaskQueue and nodeBackupDir defaults and overrides', () => {
    const c = parseConfig(
      minimal({
        databases: [{ name: 'kimiclaw', nodes: [node('a'), node('b', { taskQueue: 'q-b', backupDir: '/bk' })] }],
      }),
    );
    const [a, b] = c.databases[0]?.nodes ?? [];
    assert.ok(a && b);
    assert.equal(nodeTaskQueue(c, a), 'kimiclaw-dr-node-a');
    assert.equal(nodeTaskQueue(c, b), 'q-b');
    assert.equal(nodeBackupDir(a), '/var/lib/kimiclaw/backups');
    assert.equal(nodeBackupDir(b), '/bk');
  });
});

void describe('parseConfig errors', () => {
  void test('names every bad field in one ConfigError with its path', () => {
    const problems = problemsOf(() =>
      parseConfig(
        minimal({
          storage: { bucket: 'Bad_Bucket', endpoint: 'ftp://example.com' },
          backup: { retention: { L1: 'abc', L2: '0d' } },
          databases: [{ name: 'Bad!', nodes: [node('n1', { url: 'nope' })] }],
          metrics: { port: 70_000 },
        }),
        'test.json',
      ),
    );
    assert.deepEqual(problems.sort(), [
      'backup.retention.L1: "abc" is not a duration; write a number and a unit (ms, s, m, h, d, w, y), e.g. "24h"',
      'backup.retention.L2: "0d" must be greater than zero',
      'databases.0.name: must be 1-63 characters of a-z, 0-9, "-" or "_", starting with a letter or digit',
      'databases.0.nodes.0.url: must be an http(s) URL such as http://127.0.0.1:7070',
      'metrics.port: Too big: expected number to be <=65535',
      'storage.bucket: must be a valid S3 bucket name (3-63 of a-z, 0-9, ".", "-")',
      'storage.endpoint: must be an http(s) URL',
    ]);
  });

  void test('the message names the source and lists each problem', () => {
    try {
      parseConfig(minimal({ backup: { retention: { L2: '0d' } } }), 'dr.json');
      assert.fail('expected a ConfigError');
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      assert.equal(
        err.message,
        'invalid configuration (dr.json):\n  - backup.retention.L2: "0d" must be greater than zero',
      );
    }
  });

  void test('negative durations are refused', () => {
    assert.deepEqual(
      problemsOf(() => parseConfig(minimal({ backup: { orphanGrace: '-1h' } }))),
      ['backup.orphanGrace: "-1h" must be greater than zero'],
    );
  });

  void test('missing storage and databases are named', () => {
    const problems = problemsOf(() => parseConfig({}));
    assert.equal(problems.length, 2);
    assert.match(problems[0] ?? '', /^storage: /);
    assert.match(problems[1] ?? '', /^databases: /);
  });

  void test('an empty database list and a database without nodes are refused', () => {
    assert.deepEqual(
      problemsOf(() => parseConfig(minimal({ databases: [] }))),
      ['databases: list at least one database'],
    );
    assert.deepEqual(
      problemsOf(() => parseConfig(minimal({ databases: [{ name: 'x', nodes: [] }] }))),
      ['databases.0.nodes: list at least one node'],
    );
  });

  void test('unknown compression names the accepted values', () => {
    const problems = problemsOf(() => parseConfig(minimal({ backup: { compression: 'lz4' } })));
    assert.equal(problems.length, 1);
    assert.match(problems[0] ?? '', /^backup\.compression: /);
    assert.ok(problems[0]?.endsWith('(accepted: "zstd", "gzip")'), problems[0]);
  });

  void test('gzip levels above 9 are refused; zstd accepts up to 19', () => {
    assert.deepEqual(
      problemsOf(() => parseConfig(minimal({ backup: { compression: 'gzip', level: 12 } }))),
      ['backup.level: gzip accepts levels 1-9'],
    );
    assert.equal(parseConfig(minimal({ backup: { compression: 'zstd', level: 19 } })).backup.level, 19);
    assert.equal(problemsOf(() => parseConfig(minimal({ backup: { level: 20 } }))).length, 1);
  });

  void test('duplicate database names are named with the index of the repeat', () => {
    const db = { name: 'kimiclaw', nodes: [node()] };
    assert.deepEqual(
      problemsOf(() => parseConfig(minimal({ databases: [db, { name: 'other', nodes: [node()] }, db] }))),
      ['databases.2.name: "kimiclaw" is listed twice'],
    );
    // Reported alongside other problems that do not stop a field's own type check.
    assert.deepEqual(problemsOf(() => parseConfig(minimal({ databases: [db, db], metrics: { port: -1 } }))).sort(), [
      'databases.1.name: "kimiclaw" is listed twice',
      'metrics.port: Too small: expected number to be >=0',
    ]);
    // BUG (not asserted): with a field that fails its type or transform (e.g. compression "lz4" or
    // retention "0d"), the duplicate-name check never runs and is missing from the ConfigError.
  });

  void test('bucket names: valid and invalid', () => {
    for (const bucket of ['abc', 'my-bucket', 'my.bucket.1', 'a'.repeat(63)]) {
      assert.equal(parseConfig(minimal({ storage: { bucket } })).storage.bucket, bucket);
    }
    for (const bucket of ['ab', 'ABC', 'a_b_c', '-abc', 'abc-', '.abc', 'a'.repeat(64), '', 'my bucket']) {
      assert.deepEqual(
        problemsOf(() => parseConfig(minimal({ storage: { bucket } }))),
        ['storage.bucket: must be a valid S3 bucket name (3-63 of a-z, 0-9, ".", "-")'],
        bucket,
      );
    }
  });

  void test('bad URLs of nodes and the S3 endpoint', () => {
    for (const url of ['nope', 'ftp://host', '127.0.0.1:7070', '']) {
      assert.deepEqual(
        problemsOf(() => parseConfig(minimal({ databases: [{ name: 'k', nodes: [node('n1', { url })] }] }))),
        ['databases.0.nodes.0.url: must be an http(s) URL such as http://127.0.0.1:7070'],
        url,
      );
    }
    assert.deepEqual(
      problemsOf(() => parseConfig(minimal({ storage: { bucket: 'my-bucket', endpoint: 'file:///tmp' } }))),
      ['storage.endpoint: must be an http(s) URL'],
    );
    assert.equal(
      parseConfig(minimal({ storage: { bucket: 'my-bucket', endpoint: 'https://s3.example.com:9000' } })).storage
        .endpoint,
      'https://s3.example.com:9000',
    );
  });

  void test('a schedule with neither every nor cron is refused', () => {
    assert.deepEqual(
      problemsOf(() => parseConfig(minimal({ schedules: { backup: { L2: { timezone: 'UTC' } } } }))),
      ['schedules.backup.L2: give "every" (e.g. "6h") or "cron" (e.g. ["0 */6 * * *"])'],
    );
  });

  void test('a negative schedule offset is refused', () => {
    assert.deepEqual(
      problemsOf(() => parseConfig(minimal({ schedules: { backup: { L1: { every: '1h', offset: '-5m' } } } }))),
      ['schedules.backup.L1.offset: "-5m" is not a non-negative duration'],
    );
  });
});

void describe('loadConfig', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kimiclaw-config-test-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function writeConfig(name: string, value: unknown): Promise<string> {
    const file = join(dir, name);
    await mkdir(join(file, '..'), { recursive: true });
    await writeFile(file, typeof value === 'string' ? value : JSON.stringify(value));
    return file;
  }

  void test('reads the file; environment variables win over it', async () => {
    const file = await writeConfig(
      'env-wins.json',
      minimal({ storage: { bucket: 'from-file', region: 'eu-west-1' }, temporal: { namespace: 'file-ns' } }),
    );
    const c = loadConfig({
      file,
      env: {
        S3_BUCKET: 'from-env',
        TEMPORAL_NAMESPACE: 'env-ns',
        TEMPORAL_TLS: '1',
        S3_FORCE_PATH_STYLE: 'false',
        DR_METRICS_PORT: '9100',
        S3_REGION: '',
      },
    });
    assert.equal(c.storage.bucket, 'from-env');
    assert.equal(c.storage.region, 'eu-west-1', 'an empty env var is ignored');
    assert.equal(c.temporal.namespace, 'env-ns');
    assert.equal(c.temporal.tls, true);
    assert.equal(c.storage.forcePathStyle, false);
    assert.equal(c.metrics.port, 9100);
  });

  void test('env-sourced bad fields are named with the env var', async () => {
    const file = await writeConfig('env-bad.json', minimal({ backup: { retention: { L2: '0d' } } }));
    try {
      loadConfig({ file, env: { S3_BUCKET: 'Bad_Bucket', DR_METRICS_PORT: 'abc', TEMPORAL_TLS: 'maybe' } });
      assert.fail('expected a ConfigError');
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      assert.deepEqual(err.problems.sort(), [
        'backup.retention.L2: "0d" must be greater than zero',
        'metrics.port (env DR_METRICS_PORT): Invalid input: expected number, received string',
        'storage.bucket (env S3_BUCKET): must be a valid S3 bucket name (3-63 of a-z, 0-9, ".", "-")',
        'temporal.tls (env TEMPORAL_TLS): Invalid input: expected boolean, received string',
      ]);
      assert.ok(err.message.startsWith(`invalid configuration (${file} + environment):`), err.message);
    }
  });

  void test('a field from the file is named without an env var', async () => {
    const file = await writeConfig('file-bad.json', minimal({ storage: { bucket: 'Bad_Bucket' } }));
    assert.deepEqual(
      problemsOf(() => loadConfig({ file, env: {} })),
      ['storage.bucket: must be a valid S3 bucket name (3-63 of a-z, 0-9, ".", "-")'],
    );
  });

  void test('relative dataDir and backupDir resolve against the config file folder', async () => {
    const file = await writeConfig(
      'sub/folder/paths.json',
      minimal({
        databases: [
          {
            name: 'kimiclaw',
            nodes: [node('a', { dataDir: 'data/a', backupDir: '../bk' }), node('b', { dataDir: '/abs/b' })],
          },
        ],
      }),
    );
    const c = loadConfig({ file, env: {} });
    const [a, b] = c.databases[0]?.nodes ?? [];
    assert.equal(a?.dataDir, join(dir, 'sub/folder/data/a'));
    assert.equal(a?.backupDir, join(dir, 'sub/bk'));
    assert.equal(b?.dataDir, '/abs/b');
    assert.equal(b?.backupDir, undefined);
  });

  void test('DR_CONFIG names the file when no file option is given', async () => {
    const file = await writeConfig('via-env.json', minimal({ storage: { bucket: 'via-dr-config' } }));
    assert.equal(loadConfig({ env: { DR_CONFIG: file } }).storage.bucket, 'via-dr-config');
  });

  void test('defaults lie under the file, merged deeply', async () => {
    const file = await writeConfig('merge.json', { storage: { region: 'eu-central-1' } });
    const defaults: ConfigInput = {
      storage: { bucket: 'default-bucket', region: 'us-west-2' },
      databases: [{ name: 'kimiclaw', nodes: [node()] }],
    };
    const c = loadConfig({ file, env: {}, defaults });
    assert.equal(c.storage.bucket, 'default-bucket');
    assert.equal(c.storage.region, 'eu-central-1');
    assert.equal(c.databases[0]?.name, 'kimiclaw');
  });

  void test('a file that is not JSON or cannot be read is a ConfigError', async () => {
    const bad = await writeConfig('broken.json', '{ "storage": ');
    const badProblems = problemsOf(() => loadConfig({ file: bad, env: {} }));
    assert.equal(badProblems.length, 1);
    assert.ok(badProblems[0]?.startsWith(`${bad} is not valid JSON: `), badProblems[0]);

    const missing = join(dir, 'does-not-exist.json');
    const missingProblems = problemsOf(() => loadConfig({ file: missing, env: {} }));
    assert.equal(missingProblems.length, 1);
    assert.ok(missingProblems[0]?.startsWith(`cannot read ${missing}: `), missingProblems[0]);
  });
});

void describe('cluster config', () => {
  void test('defaults: a JSON file config center, 500 ms probes, one synchronous replica, degrade', () => {
    const c = parseConfig(minimal()).cluster;
    assert.deepEqual(c.configCenter, { kind: 'file', path: '.data/config-center.json' });
    assert.equal(c.probeInterval, 500);
    assert.equal(c.failureThreshold, 3);
    assert.equal(c.syncReplicas, 1);
    assert.equal(c.whenSyncReplicaDown, 'degrade');
    assert.deepEqual(c.webhooks, []);
  });

  void test('ETCD_ENDPOINTS selects etcd', () => {
    const c = loadConfig({
      file: undefined,
      env: { DR_CONFIG: '', ETCD_ENDPOINTS: 'http://127.0.0.1:2379, http://10.0.0.2:2379' },
      defaults: minimal() as ConfigInput,
    });
    assert.deepEqual(c.cluster.configCenter, {
      kind: 'etcd',
      endpoints: ['http://127.0.0.1:2379', 'http://10.0.0.2:2379'],
      timeoutMs: 2_000,
    });
  });

  void test('bad webhook URLs, config centers and policies are named with the accepted values', () => {
    const problems = problemsOf(() =>
      parseConfig(
        minimal({
          cluster: {
            webhooks: [{ url: 'ftp://hooks.example.com' }, { url: 'not a url' }],
            whenSyncReplicaDown: 'panic',
            configCenter: { kind: 'zookeeper' },
          },
        }),
      ),
    );
    assert.ok(
      problems.some((p) => /^cluster\.webhooks\.0\.url: must be an http\(s\) URL/.test(p)),
      problems.join('\n'),
    );
    assert.ok(
      problems.some((p) => /^cluster\.webhooks\.1\.url: must be an http\(s\) URL/.test(p)),
      problems.join('\n'),
    );
    assert.ok(
      problems.some((p) => /^cluster\.whenSyncReplicaDown: .*"degrade", "block"/.test(p)),
      problems.join('\n'),
    );
    assert.ok(
      problems.some((p) => /^cluster\.configCenter.*etcd.*file/.test(p)),
      problems.join('\n'),
    );
  });
});

void describe('topology validation', () => {
  const zoned = (placement?: string, extra: Record<string, unknown> = {}) =>
    minimal({
      databases: [
        {
          name: 'kimiclaw',
          nodes: [node('a1', { zone: 'a', region: 'r1' }), node('a2', { zone: 'a' }), node('b1', { zone: 'b' })],
        },
      ],
      cluster: { ...(placement ? { syncPlacement: placement } : {}), ...extra },
    });

  void test('nodes carry a zone and a region; the placement defaults to prefer-other-zone', () => {
    const config = parseConfig(zoned());
    assert.equal(config.databases[0]!.nodes[0]!.zone, 'a');
    assert.equal(config.databases[0]!.nodes[0]!.region, 'r1');
    assert.equal(config.cluster.syncPlacement, 'prefer-other-zone');
  });

  void test('an unknown placement names the accepted values', () => {
    const problems = problemsOf(() => parseConfig(zoned('elsewhere')));
    assert.ok(problems.some((p) => p.startsWith('cluster.syncPlacement:') && p.includes('"require-other-zone"')));
  });

  void test('some nodes zoned and others not is refused, naming the nodes without one', () => {
    const problems = problemsOf(() =>
      parseConfig(minimal({ databases: [{ name: 'kimiclaw', nodes: [node('a1', { zone: 'a' }), node('b1')] }] })),
    );
    assert.deepEqual(problems, [
      'databases.0.nodes: give every node of database "kimiclaw" a zone, or none (no zone: b1)',
    ]);
  });

  void test('a synchronous standby requirement no node can meet is refused', () => {
    const problems = problemsOf(() =>
      parseConfig(
        minimal({
          databases: [{ name: 'kimiclaw', nodes: [node('a1', { zone: 'a' }), node('a2', { zone: 'a' })] }],
          cluster: { syncPlacement: 'require-other-zone' },
        }),
      ),
    );
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /^cluster\.syncPlacement: "require-other-zone" cannot be met when a1 \(zone a\)/);
    const tooMany = problemsOf(() => parseConfig(zoned(undefined, { syncReplicas: 3 })));
    assert.match(tooMany[0]!, /^cluster\.syncReplicas: 3 synchronous standbys cannot be met .* 3 nodes \(at most 2\)/);
  });

  void test('require-other-zone that every node can meet is accepted', () => {
    const nodes = [node('a1', { zone: 'a' }), node('b1', { zone: 'b' })];
    const config = parseConfig(
      minimal({ databases: [{ name: 'kimiclaw', nodes }], cluster: { syncPlacement: 'require-other-zone' } }),
    );
    assert.equal(config.cluster.syncPlacement, 'require-other-zone');
  });

  void test('etcd members: a zone holding a majority is refused; one per zone is accepted', () => {
    const etcd = (zones: string[]) =>
      zoned(undefined, {
        configCenter: {
          kind: 'etcd',
          endpoints: zones.map((zone, i) => ({ url: `http://127.0.0.1:${2379 + i}`, zone })),
        },
      });
    const problems = problemsOf(() => parseConfig(etcd(['a', 'a', 'b'])));
    assert.deepEqual(problems, [
      'cluster.configCenter.endpoints: zone a holds 2 of the 3 etcd members, a majority: losing zone a loses the config center; put one member per zone (a witness member in a third zone)',
    ]);
    const config = parseConfig(etcd(['a', 'b', 'c']));
    assert.equal(config.cluster.configCenter.kind, 'etcd');
  });

  void test("a standby region's worker (region / DR_REGION) uses that region's store; an undeclared region is refused", () => {
    const regional = (region?: string) =>
      minimal({
        databases: [{ name: 'kimiclaw', nodes: [node('a1', { region: 'a' }), node('b1', { region: 'b' })] }],
        regions: { primary: 'a', standby: [{ name: 'b', storage: { bucket: 'store-b', endpoint: 'http://b:9000' } }] },
        ...(region ? { region } : {}),
      });
    assert.equal(parseConfig(regional()).storage.bucket, 'my-bucket', 'the primary region keeps the top-level store');
    assert.equal(parseConfig(regional('a')).storage.bucket, 'my-bucket');
    const inB = parseConfig(regional('b'));
    assert.equal(inB.storage.bucket, 'store-b');
    assert.equal(inB.storage.endpoint, 'http://b:9000');
    assert.deepEqual(
      problemsOf(() => parseConfig(regional('x'))),
      ['region: "x" is not a declared region (accepted: "a", "b")'],
    );
    assert.deepEqual(
      problemsOf(() => parseConfig(minimal({ region: 'b' }))),
      ['region: "b" names a region, but no regions are declared (declare them under "regions")'],
    );
  });
});
