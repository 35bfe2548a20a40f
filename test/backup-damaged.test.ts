/**
 * A backup of a damaged database file fails once, for good: the node checks the blocks of the
 * consistent copy it takes, finds the damage, turns damaged and refuses the snapshot (409
 * Damaged); the worker takes that as final (NodeDamaged, not retried), the workflow fails at the
 * snapshot step and backup_failures_total counts it. Real Temporal, versitygw and node process.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { KimiclawDr } from '../src/client';
import { damageBlockInUse } from '../src/dev/damage';
import { Harness } from './harness';

let h: Harness;

before(async () => {
  h = await Harness.start({ seedBytes: 6 * 1024 * 1024 });
});

after(async () => {
  await h?.stop();
});

void describe('a backup of a damaged file', () => {
  void test('fails once at the snapshot, non-retryable, with backup_failures_total set and the node damaged', async () => {
    const node = h.nodes[0]!;
    // Damaged while the node is down: DuckDB opens the file without a word (the block is read
    // only when needed), and the scrub (every 60 s by default) has not passed yet.
    await node.stop('SIGTERM');
    await damageBlockInUse(join(node.dataDir, 'kimiclaw.duckdb'));
    await node.start();
    const before = (await (await fetch(`${node.url}/health`)).json()) as { status: string };
    assert.equal(before.status, 'ok', 'nothing has noticed yet');

    const started = Date.now();
    const handle = await new KimiclawDr(h.client, h.config).startBackup({ tier: 'L1' });
    const err = await handle.result().then(
      () => assert.fail('a backup of a damaged file succeeded'),
      (e: unknown) => e,
    );
    const tookMs = Date.now() - started;
    assert.ok(err instanceof WorkflowFailedError);
    assert.ok(err.cause instanceof ApplicationFailure, String(err.cause));
    assert.equal(err.cause.type, 'NodeDamaged');
    assert.equal(err.cause.nonRetryable, true);
    assert.match(err.cause.message, /failed at snapshot/);
    assert.match(err.cause.message, /damaged/);
    assert.ok(tookMs < 60_000, `failed after ${tookMs} ms`);
    // Once: the snapshot activity ran a single attempt.
    const history = await handle.fetchHistory();
    const attempts = (history.events ?? [])
      .filter((e) => e.activityTaskStartedEventAttributes)
      .map((e) => e.activityTaskStartedEventAttributes!.attempt ?? 1);
    assert.ok(
      attempts.every((a) => a === 1),
      `an activity was retried: attempts ${attempts.join(', ')}`,
    );

    const metrics = await (await fetch(h.worker!.metricsServer!.url)).text();
    assert.match(metrics, /backup_failures_total\{database="kimiclaw",tier="L1",step="snapshot"\} 1/);
    const after = (await (await fetch(`${node.url}/health`)).json()) as {
      status: string;
      damage?: { detectedBy: string; reason: string };
    };
    assert.equal(after.status, 'damaged', "the node's health reflects it");
    assert.equal(after.damage?.detectedBy, 'scrub');
    assert.match(after.damage?.reason ?? '', /consistent copy taken for a snapshot/);
  });
});
