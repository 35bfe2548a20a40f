/**
 * The external tools and the loopback servers every other test builds on: if these fail, the
 * failure should say so here rather than as a timeout in a workflow test.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { Client, Connection } from '@temporalio/client';
import { StartError, createBucket, s3ClientFor, startTemporalDevServer, startVersitygw } from '../src/dev/servers';
import { SEARCH_ATTRIBUTES, registerSearchAttributes } from '../src/search-attributes';
import { TEMPORAL_CLI_VERSION, VERSITYGW_VERSION, cachedToolPath, ensureTools, type ToolPaths } from '../src/dev/tools';

const run = promisify(execFile);

let workDir: string;
before(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'kimiclaw-tools-test-'));
});
after(async () => {
  await rm(workDir, { recursive: true, force: true });
});

/** True when nothing listens on the port any more. */
function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

describe('ensureTools', () => {
  let tools: ToolPaths;
  before(async () => {
    tools = await ensureTools();
  });

  test('the Temporal CLI runs and reports its version', async () => {
    const { stdout } = await run(tools.temporal, ['--version']);
    if (tools.temporal === cachedToolPath('temporal', TEMPORAL_CLI_VERSION)) {
      assert.match(stdout, new RegExp(`temporal version ${TEMPORAL_CLI_VERSION.replaceAll('.', '\\.')}\\b`));
    } else {
      assert.match(stdout, /temporal version \d+\.\d+\.\d+/, 'a temporal from PATH still reports a version');
    }
  });

  test('versitygw runs and is the pinned version', async () => {
    const { stdout } = await run(tools.versitygw, ['--version']);
    assert.match(stdout, new RegExp(`Version\\s*:\\s*v${VERSITYGW_VERSION.replaceAll('.', '\\.')}\\b`));
  });

  test('zstd runs', async () => {
    const { stdout } = await run(tools.zstd, ['--version']);
    assert.match(stdout, /Zstandard CLI.*v\d+\.\d+/);
  });

  test('a second call finds the same tools without building', async () => {
    const started = Date.now();
    assert.deepEqual(await ensureTools(), tools);
    assert.ok(Date.now() - started < 5_000, 'cached tools are found at once');
  });
});

describe('versitygw', () => {
  test('keeps objects across a stop and a start on the same port', async () => {
    const creds = { accessKey: 'kimiclaw-test', secretKey: 'kimiclaw-test-secret' };
    const gw = await startVersitygw({ dir: join(workDir, 's3'), ...creds, logFile: join(workDir, 'versitygw.log') });
    const client = s3ClientFor(gw.endpoint, creds);
    try {
      assert.match(gw.endpoint, /^http:\/\/127\.0\.0\.1:\d+$/);
      await createBucket(gw.endpoint, creds, 'backups');
      await createBucket(gw.endpoint, creds, 'backups'); // already ours: no error
      await client.send(new PutObjectCommand({ Bucket: 'backups', Key: 'a/b.txt', Body: 'hello' }));

      await gw.stop();
      await assert.rejects(
        client.send(new GetObjectCommand({ Bucket: 'backups', Key: 'a/b.txt' })),
        'a stopped server does not answer',
      );
      await gw.start();

      const got = await client.send(new GetObjectCommand({ Bucket: 'backups', Key: 'a/b.txt' }));
      assert.equal(await got.Body?.transformToString(), 'hello');
    } finally {
      client.destroy();
      await gw.stop();
    }
    assert.ok(await portIsFree(Number(new URL(gw.endpoint).port)), 'the port is released after stop');
  });

  test('refuses to delete an object under Object Lock', async () => {
    const creds = { accessKey: 'kimiclaw-lock', secretKey: 'kimiclaw-lock-secret' };
    const gw = await startVersitygw({ dir: join(workDir, 's3-lock'), ...creds });
    const client = s3ClientFor(gw.endpoint, creds);
    try {
      await createBucket(gw.endpoint, creds, 'archive', { objectLock: true });
      await client.send(
        new PutObjectCommand({
          Bucket: 'archive',
          Key: 'l3/x',
          Body: 'kept',
          ObjectLockMode: 'COMPLIANCE',
          ObjectLockRetainUntilDate: new Date(Date.now() + 3_600_000),
        }),
      );
      await assert.rejects(client.send(new DeleteObjectCommand({ Bucket: 'archive', Key: 'l3/x' })), {
        name: 'AccessDenied',
      });
    } finally {
      client.destroy();
      await gw.stop();
    }
  });
});

describe('Temporal dev server', () => {
  test('answers, has the Dr* search attributes, and frees its port on stop', async () => {
    const server = await startTemporalDevServer({ namespace: 'kimiclaw-test', uiPort: false });
    const port = Number(server.address.split(':')[1]);
    const connection = await Connection.connect({ address: server.address });
    try {
      const ns = await connection.workflowService.describeNamespace({ namespace: 'kimiclaw-test' });
      assert.equal(ns.namespaceInfo?.name, 'kimiclaw-test');

      const { customAttributes } = await connection.operatorService.listSearchAttributes({
        namespace: 'kimiclaw-test',
      });
      for (const name of Object.keys(SEARCH_ATTRIBUTES)) {
        assert.ok(customAttributes && name in customAttributes, `${name} is registered`);
      }
      assert.deepEqual(await registerSearchAttributes(connection, 'kimiclaw-test'), [], 'nothing left to add');

      await connection.operatorService.removeSearchAttributes({
        namespace: 'kimiclaw-test',
        searchAttributes: ['DrTier'],
      });
      assert.deepEqual(
        await registerSearchAttributes(connection, 'kimiclaw-test'),
        ['DrTier'],
        'a missing one is added',
      );
    } finally {
      await connection.close();
      await server.stop();
    }
    assert.ok(await portIsFree(port), 'the port is released after stop');
  });

  test('a server that cannot start says why', async () => {
    // Drop whatever connects: the probe's connection must not keep this process alive.
    const blocker = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const address = blocker.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    try {
      await assert.rejects(startTemporalDevServer({ port, uiPort: false }), (err: unknown) => {
        assert.ok(err instanceof StartError, String(err));
        assert.match(err.message, /address already in use/);
        return true;
      });
    } finally {
      blocker.close();
    }
  });

  test('keeps workflow state in a database file across restarts', async () => {
    const dbFile = join(workDir, 'temporal', 'dev.sqlite');
    const first = await startTemporalDevServer({ dbFile, uiPort: false, logFile: join(workDir, 'temporal.log') });
    let connection = await Connection.connect({ address: first.address });
    try {
      // No worker serves this queue: the workflow just stays open, which is all we need to see.
      await new Client({ connection }).workflow.start('neverRuns', { taskQueue: 'nobody', workflowId: 'survives' });
    } finally {
      await connection.close();
      await first.stop();
    }
    const second = await startTemporalDevServer({ dbFile, uiPort: false });
    connection = await Connection.connect({ address: second.address });
    try {
      const described = await new Client({ connection }).workflow.getHandle('survives').describe();
      assert.equal(described.status.name, 'RUNNING');
    } finally {
      await connection.close();
      await second.stop();
    }
  });
});
