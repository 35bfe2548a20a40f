/** A restore's hold on its backups outlasts the longest wait for an archive-class retrieval. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RETRIEVAL_DEADLINE_MS, RETRIEVAL_POLL_MS, backupHoldMs } from '../../src/restore/hold';

test('a restore that waits for a retrieval holds its backups past the retrieval deadline', () => {
  assert.ok(backupHoldMs(true) > RETRIEVAL_DEADLINE_MS, 'the hold outlasts the wait');
  assert.ok(backupHoldMs(true) - RETRIEVAL_DEADLINE_MS >= backupHoldMs(false), 'and leaves the usual time to work');
});

test('the hold is renewed far more often than it lasts', () => {
  assert.ok(RETRIEVAL_POLL_MS * 10 < backupHoldMs(true));
});
