/**
 * Config that points at something wrong: the workflow fails at once with the field named when
 * retrying cannot help (missing bucket, refused credentials, a data directory the node does not
 * own), and keeps retrying, saying what it waits for, when it can (an unreachable node).
 */
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { KimiclawDr } from '../src/client';
import type { Config, ConfigInput } from '../src/config';
import { freePort } from '../src/net';
import { Harness, eventually } from './harness';

let h: Harness;

before(async () => {
  h = await Harness.start({ worker: false });
});

after(async () => {
  await h?.stop();
});

async function failedBackup(config: Config, tier: 'L1' | 'L2' = 'L2'): Promise<ApplicationFailure> {
  const handle = await new KimiclawDr(h.client, config).startBackup({ tier });
  const err = await handle.result().then(
    () => assert.fail('expected the backup to fail'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof WorkflowFailedError);
  assert.ok(err.cause instanceof ApplicationFailure, String(err.cause));
  return err.cause;
}

function withStorage(patch: Partial<NonNullable<ConfigInput['storage']>>) {
  return (base: ConfigInput): ConfigInput => ({ ...base, storage: { ...base.storage, ...patch } });
}

async function s3Keys(): Promise<string[]> {
  return readdir(join(h.dir, 's3'), { recursive: true });
}

describe('configuration that points at the wrong thing', () => {
  test('a bucket that does not exist: fails at once naming storage.bucket, writes nothing', async () => {
    const before = await s3Keys();
    const { config } = await h.startVariant(withStorage({ bucket: 'no-such-bucket' }));
    const failure = await failedBackup(config);
    assert.equal(failure.type, 'InvalidConfig');
    assert.equal(failure.nonRetryable, true);
    assert.match(failure.message, /storage\.bucket: bucket "no-such-bucket" does not exist/);
    assert.deepEqual(await s3Keys(), before);
    const snapshots = await readdir(join(h.nodes[0]!.dataDir, 'snapshots')).catch(() => []);
    assert.deepEqual(snapshots, [], 'no snapshot was taken');
  });

  test('wrong credentials: fails at once naming the credential fields', async () => {
    const { config } = await h.startVariant(withStorage({ secretAccessKey: 'wrong-secret' }));
    const failure = await failedBackup(config);
    assert.equal(failure.type, 'InvalidConfig');
    assert.match(failure.message, /refused the credentials for bucket "kimiclaw-backups"/);
    assert.match(failure.message, /storage\.accessKeyId and storage\.secretAccessKey/);
  });

  test('a node data directory the node does not own: the snapshot path is refused, naming dataDir', async () => {
    const { config } = await h.startVariant((base) => ({
      ...base,
      databases: [
        { name: 'kimiclaw', nodes: [{ id: 'node1', url: h.nodes[0]!.url, dataDir: join(h.dir, 'elsewhere') }] },
      ],
    }));
    const failure = await failedBackup(config, 'L1');
    assert.equal(failure.type, 'InvalidConfig');
    assert.match(failure.message, /dataDir/);
    assert.match(failure.message, /elsewhere\/snapshots/);
  });

  test('the node unreachable: retried with backoff, the pending activity says what it waits for', async () => {
    const deadPort = await freePort();
    const { config } = await h.startVariant((base) => ({
      ...base,
      databases: [
        {
          name: 'kimiclaw',
          nodes: [{ id: 'node1', url: `http://127.0.0.1:${deadPort}`, dataDir: h.nodes[0]!.dataDir }],
        },
      ],
    }));
    const dr = new KimiclawDr(h.client, config);
    const handle = await dr.startBackup({ tier: 'L2' });
    const waiting = await eventually(async () => {
      const d = await handle.describe();
      const pending = d.raw.pendingActivities?.[0];
      return pending && (pending.attempt ?? 0) >= 2 ? pending : undefined;
    }, 'a retried activity');
    assert.match(
      waiting.lastFailure?.message ?? '',
      new RegExp(`waiting for node node1 at http://127.0.0.1:${deadPort}.*ECONNREFUSED`),
    );
    assert.equal((await handle.describe()).status.name, 'RUNNING', 'an unreachable node is not a final failure');
    await handle.terminate('test done');
  });
});
