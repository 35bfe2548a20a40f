/**
 * The continuous log archive against real servers: segments cover every acknowledged event once,
 * replaying them reproduces the source exactly, and killing the node or the worker in the middle
 * leaves no gap and no duplicate.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { KimiclawDr } from '../src/client';
import { decodeSegment, type LogEvent } from '../src/archive/segment';
import { fingerprint } from '../src/duckdb/fingerprint';
import { openDatabase } from '../src/duckdb/open';
import { applyEvents } from '../src/duckdb/replay';
import { ensureSchema } from '../src/duckdb/schema';
import { parseSegmentKey } from '../src/restore/segments';
import { startWriter } from '../src/node/writer';
import { NodeClient } from '../src/node-client';
import { Stores } from '../src/storage/stores';
import { writeFile } from 'node:fs/promises';
import { EVENTS_CREDENTIAL, Harness, NODE_CREDENTIAL, eventually, runCli, waitFor } from './harness';

let h: Harness;
let dr: KimiclawDr;
let stores: Stores;

before(async () => {
  h = await Harness.start({ config: (base) => ({ ...base, archive: { interval: '1s', segmentMaxEvents: 500 } }) });
  dr = new KimiclawDr(h.client, h.config);
  stores = new Stores(h.config);
});

after(async () => {
  stores?.destroy();
  await h?.stop();
});

async function segments() {
  const objects = await stores.s3().list('kimiclaw/log/');
  return objects
    .map((o) => ({ key: o.key, range: parseSegmentKey(o.key) }))
    .filter((s) => s.range !== undefined)
    .map((s) => ({ key: s.key, startLsn: s.range!.startLsn, endLsn: s.range!.endLsn }))
    .sort((a, b) => a.startLsn - b.startLsn);
}

/** Segments must tile 1..through exactly: no gap, no overlap (each LSN archived once). */
async function assertTiles(through: number): Promise<LogEvent[]> {
  const segs = await segments();
  assert.ok(segs.length > 0, 'some segments');
  let expected = 1;
  const events: LogEvent[] = [];
  for (const s of segs) {
    assert.equal(
      s.startLsn,
      expected,
      `segment ${s.key} starts at ${s.startLsn}, expected ${expected} (gap or overlap)`,
    );
    const object = await stores.s3().getBytes(s.key);
    assert.ok(object, s.key);
    const rows = await decodeSegment(object.body, s.key, object.metadata.sha256);
    assert.equal(rows[0]?.lsn, s.startLsn);
    assert.equal(rows.at(-1)?.lsn, s.endLsn);
    assert.equal(String(rows.length), object.metadata.rows);
    events.push(...rows);
    expected = s.endLsn + 1;
  }
  assert.ok(expected - 1 >= through, `archived through ${expected - 1}, expected at least ${through}`);
  return events;
}

async function archivedThrough(): Promise<number> {
  const segs = await segments();
  return segs.length ? Math.max(...segs.map((s) => s.endLsn)) : 0;
}

describe('continuous log archive', () => {
  test('seals every acknowledged event within seconds; replay reproduces the source exactly', async () => {
    const handle = await dr.ensureLogArchive('kimiclaw');
    const again = await dr.ensureLogArchive('kimiclaw');
    assert.equal(again.firstExecutionRunId, handle.firstExecutionRunId, 'one archiver per database');

    const writer = startWriter({ token: EVENTS_CREDENTIAL, url: h.nodes[0]!.url, eventsPerBatch: 20, intervalMs: 25 });
    await new Promise((r) => setTimeout(r, 4_000));
    const written = await writer.stop();
    assert.equal(written.errors, 0);
    const head = written.lastLsn!;
    await eventually(
      async () => ((await archivedThrough()) >= head ? true : undefined),
      'the archive to catch up',
      30_000,
    );
    const events = await assertTiles(head);

    // Replaying the archive into an empty database gives the source's fingerprint at that LSN.
    const dir = await mkdtemp(join(tmpdir(), 'archive-replay-'));
    try {
      const db = await openDatabase(join(dir, 'replayed.duckdb'));
      const c = await db.connect();
      await ensureSchema(c);
      await applyEvents(
        c,
        events.filter((e) => e.lsn <= head),
      );
      const replayed = await fingerprint(c);
      c.closeSync();
      db.close();
      const source = await new NodeClient('node1', h.nodes[0]!.url, NODE_CREDENTIAL).stats(head);
      assert.deepEqual(replayed, {
        rows: source.rows,
        minId: source.minId,
        maxId: source.maxId,
        maxLsn: source.maxLsn,
        checksum: source.checksum,
        fingerprintVersion: source.fingerprintVersion,
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }

    const metrics = await (await fetch(h.worker!.metricsServer!.url)).text();
    assert.match(metrics, /^rpo_seconds\{database="kimiclaw"\} \d/m);
    assert.match(metrics, new RegExp(`^archive_last_lsn\\{database="kimiclaw"\\} (\\d+)`, 'm'));
    assert.match(metrics, /^archive_lag_seconds_count\{database="kimiclaw"\} [1-9]/m);
  });

  test('node SIGKILLed and worker restarted while archiving: no gap, no duplicate', async () => {
    const node = h.nodes[0]!;
    const writer = startWriter({ token: EVENTS_CREDENTIAL, url: node.url, eventsPerBatch: 20, intervalMs: 20 });
    await new Promise((r) => setTimeout(r, 1_500));
    await node.stop('SIGKILL');
    const beforeKill = await writer.stop();
    await h.worker!.shutdown();
    await node.start();
    await h.startWorker();
    const writer2 = startWriter({ token: EVENTS_CREDENTIAL, url: node.url, eventsPerBatch: 20, intervalMs: 20 });
    await new Promise((r) => setTimeout(r, 2_000));
    const after2 = await writer2.stop();
    assert.equal(after2.errors, 0);
    const head = after2.lastLsn!;
    assert.ok(head > (beforeKill.lastLsn ?? 0));
    await eventually(
      async () => ((await archivedThrough()) >= head ? true : undefined),
      'the archive to catch up',
      60_000,
    );
    const events = await assertTiles(head);
    const ids = events.map((e) => e.id);
    assert.equal(new Set(ids).size, ids.length, 'no event archived twice');
    const stats = await new NodeClient('node1', node.url, NODE_CREDENTIAL).stats(head);
    assert.equal(events.filter((e) => e.lsn <= head).length, stats.rows, 'every acknowledged event is archived');
  });

  test('an object store that hangs: rpo_seconds grows at every scrape, archive status answers, the archive catches up', async () => {
    const node = h.nodes[0]!;
    const rpo = async (): Promise<number> => {
      const text = await (await fetch(h.worker!.metricsServer!.url)).text();
      return Number(/^rpo_seconds\{database="kimiclaw"\} ([\d.e+-]+)/m.exec(text)?.[1] ?? NaN);
    };
    const writer = startWriter({ token: EVENTS_CREDENTIAL, url: node.url, eventsPerBatch: 5, intervalMs: 50 });
    const archivedBefore = await waitFor(
      'the archive running',
      async () => (await archivedThrough()) > 0 && (await archivedThrough()),
    );
    h.s3.signal('SIGSTOP');
    try {
      // The archiver reads the node, then hangs on the store: the age keeps growing while it waits.
      const first = await waitFor('rpo_seconds past 5 s', async () => ((await rpo()) > 5 ? rpo() : false), 60_000);
      const later = await waitFor('rpo_seconds still growing', async () => {
        const now = await rpo();
        return now >= first + 3 && now;
      });
      assert.ok(later > first);
      // The CLI waits at most its idle timeout per request, and says what it waited for.
      const quick = join(h.dir, 'quick-timeout.json');
      await writeFile(
        quick,
        JSON.stringify({ ...h.rawConfig, storage: { ...h.rawConfig.storage, idleTimeout: '1s' } }),
      );
      const started = Date.now();
      const status = await runCli(['archive', 'status'], { ...h.env(), DR_CONFIG: quick });
      assert.equal(status.code, 1, status.stdout + status.stderr);
      assert.match(
        status.stdout,
        new RegExp(
          `archive unknown: waiting for S3 endpoint ${h.s3.endpoint} .*nothing received within 1 s.*primary at LSN \\d+`,
        ),
      );
      assert.ok(Date.now() - started < 30_000, `archive status took ${Date.now() - started} ms`);
    } finally {
      h.s3.signal('SIGCONT');
    }
    const written = await writer.stop();
    assert.ok(written.lastLsn! > archivedBefore);
    await eventually(
      async () => ((await archivedThrough()) >= written.lastLsn! ? true : undefined),
      'the archive to catch up after the outage',
      90_000,
    );
    await waitFor('rpo_seconds back to seconds', async () => (await rpo()) < 5);
    await assertTiles(written.lastLsn!);
  });
});
