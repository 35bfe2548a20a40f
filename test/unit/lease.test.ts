/**
 * The topology lease's decisions (pure) and its compare-and-swap loop against a real file config
 * center, with an injected clock so expiry is a fact of the test, not of a sleep.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FileCenter } from '../../src/config-center';
import {
  type TopologyLease,
  acquireLease,
  decideAcquire,
  decideRenew,
  isLive,
  leaseKey,
  readLease,
  releaseLease,
  renewLease,
} from '../../src/config-center/lease';

const T0 = Date.parse('2026-11-30T10:00:00.000Z');
const TTL = 15_000;

function lease(over: Partial<TopologyLease> = {}): TopologyLease {
  return {
    holder: 'switchover-kimiclaw-1/run-a',
    purpose: 'switchover',
    acquiredAt: new Date(T0).toISOString(),
    renewedAt: new Date(T0).toISOString(),
    expiresAt: new Date(T0 + TTL).toISOString(),
    preemptible: false,
    ...over,
  };
}

void describe('decideAcquire', () => {
  void test('takes a lease nobody holds, with the TTL from now', () => {
    const d = decideAcquire(undefined, { holder: 'failover-kimiclaw/r1', purpose: 'failover', ttlMs: TTL }, T0);
    assert.equal(d.kind, 'take');
    assert.equal(d.kind === 'take' && d.lease.expiresAt, new Date(T0 + TTL).toISOString());
  });

  void test('takes an expired or released lease', () => {
    const request = { holder: 'other/r', purpose: 'failover' as const, ttlMs: TTL };
    assert.equal(decideAcquire(lease(), request, T0 + TTL).kind, 'take');
    assert.equal(decideAcquire(lease({ releasedAt: new Date(T0).toISOString() }), request, T0 + 1).kind, 'take');
  });

  void test('refuses a live lease of another holder, naming it', () => {
    const d = decideAcquire(lease(), { holder: 'switchover-kimiclaw-2/run-b', purpose: 'switchover', ttlMs: TTL }, T0);
    assert.equal(d.kind, 'refuse');
    assert.equal(d.kind === 'refuse' && d.holder.holder, 'switchover-kimiclaw-1/run-a');
  });

  void test('the same holder acquiring again renews (a retried activity)', () => {
    const d = decideAcquire(lease(), { holder: lease().holder, purpose: 'switchover', ttlMs: TTL }, T0 + 5_000);
    assert.equal(d.kind, 'renew');
    assert.equal(d.kind === 'renew' && d.lease.acquiredAt, lease().acquiredAt);
    assert.equal(d.kind === 'renew' && d.lease.expiresAt, new Date(T0 + 5_000 + TTL).toISOString());
  });

  void test('preempts only a preemptible lease, and only when asked to', () => {
    const drill = lease({ holder: 'drill-q4/run', purpose: 'drill', preemptible: true });
    const failover = { holder: 'failover-kimiclaw/r', purpose: 'failover' as const, ttlMs: TTL };
    assert.equal(decideAcquire(drill, failover, T0).kind, 'refuse');
    const d = decideAcquire(drill, { ...failover, preempt: true }, T0);
    assert.equal(d.kind, 'preempt');
    assert.equal(d.kind === 'preempt' && d.lease.preempted, 'drill-q4/run');
    assert.equal(decideAcquire(lease(), { ...failover, preempt: true }, T0).kind, 'refuse');
  });
});

void describe('decideRenew', () => {
  void test('renews while the record names the holder, even just after it expired', () => {
    const d = decideRenew(lease(), lease().holder, TTL, T0 + TTL + 100);
    assert.equal(d.kind, 'renew');
  });

  void test('is lost when another holder took it, saying whether it was preempted', () => {
    const taken = lease({ holder: 'failover-kimiclaw/r', purpose: 'failover', preempted: 'drill-q4/run' });
    const preempted = decideRenew(taken, 'drill-q4/run', TTL, T0);
    assert.equal(preempted.kind, 'lost');
    assert.match(preempted.kind === 'lost' ? preempted.reason : '', /^preempted: .*failover-kimiclaw\/r/);
    const other = decideRenew(taken, 'switchover-x/r', TTL, T0);
    assert.match(other.kind === 'lost' ? other.reason : '', /^the lease is now failover held by failover-kimiclaw\/r/);
  });

  void test('is lost when gone; a lease its holder released is not renewed', () => {
    assert.equal(decideRenew(undefined, 'a', TTL, T0).kind, 'lost');
    assert.deepEqual(decideRenew(lease({ releasedAt: 'x' }), lease().holder, TTL, T0), { kind: 'released', at: 'x' });
  });
});

void describe('lease on a file config center', () => {
  let dir: string;
  let center: FileCenter;
  let now = T0;
  const clock = () => now;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kimiclaw-lease-'));
    center = new FileCenter({ path: join(dir, 'center.json') });
  });
  after(async () => {
    await center.close();
    await rm(dir, { recursive: true, force: true });
  });

  void test('one holder at a time; a dead holder’s lease expires and the next one proceeds', async () => {
    const a = await acquireLease(center, 'kimiclaw', { holder: 'a/1', purpose: 'switchover', ttlMs: TTL }, clock);
    assert.equal(a.ok, true);
    const b = await acquireLease(center, 'kimiclaw', { holder: 'b/1', purpose: 'switchover', ttlMs: TTL }, clock);
    assert.equal(b.ok, false);
    assert.equal(!b.ok && b.holder.holder, 'a/1');
    now += TTL - 1;
    assert.equal(
      (await acquireLease(center, 'kimiclaw', { holder: 'b/1', purpose: 'failover', ttlMs: TTL }, clock)).ok,
      false,
    );
    now += 1; // a stopped renewing: its lease ends exactly at expiresAt
    const c = await acquireLease(center, 'kimiclaw', { holder: 'b/1', purpose: 'failover', ttlMs: TTL }, clock);
    assert.equal(c.ok, true);
    const renewedByDead = await renewLease(center, 'kimiclaw', 'a/1', TTL, clock);
    assert.equal(renewedByDead.kind, 'lost');
    assert.equal((await readLease(center, 'kimiclaw'))?.holder, 'b/1');
  });

  void test('release frees it at once and is idempotent; another holder cannot release it', async () => {
    assert.equal(await releaseLease(center, 'kimiclaw', 'someone-else', clock), false);
    assert.equal(isLive(await readLease(center, 'kimiclaw'), now), true);
    assert.equal(await releaseLease(center, 'kimiclaw', 'b/1', clock), true);
    assert.equal(await releaseLease(center, 'kimiclaw', 'b/1', clock), false);
    const stored = await readLease(center, 'kimiclaw');
    assert.equal(isLive(stored, now), false);
    assert.equal(stored?.holder, 'b/1', 'the last holder stays visible to operators');
    const d = await acquireLease(center, 'kimiclaw', { holder: 'd/1', purpose: 'rejoin', ttlMs: TTL }, clock);
    assert.equal(d.ok, true);
  });

  void test('an unreadable record is treated as held until its own expiry', async () => {
    const { revision } = await center.get(leaseKey('other'));
    await center.compareAndSwap(leaseKey('other'), revision, {
      holder: 7,
      expiresAt: new Date(now + 1_000).toISOString(),
    });
    const refused = await acquireLease(center, 'other', { holder: 'e/1', purpose: 'switchover', ttlMs: TTL }, clock);
    assert.equal(refused.ok, false);
    assert.match(!refused.ok ? refused.holder.holder : '', /unreadable lease record \(holder/);
    now += 1_000;
    assert.equal(
      (await acquireLease(center, 'other', { holder: 'e/1', purpose: 'switchover', ttlMs: TTL }, clock)).ok,
      true,
    );
  });
});
