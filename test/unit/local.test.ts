import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { LocalStore } from '../../src/storage/local';

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

const ID = 'kimiclaw-L1-20261126T030000Z-3f9a';
const ARTIFACT = `kimiclaw/L1/${ID}/kimiclaw.duckdb.zst`;
const MANIFEST = `kimiclaw/L1/${ID}/manifest.json`;

void describe('LocalStore', () => {
  let parent: string;
  let root: string;
  let store: LocalStore;
  let n = 0;

  before(async () => {
    parent = await mkdtemp(join(tmpdir(), 'kimiclaw-local-test-'));
  });
  after(async () => {
    await rm(parent, { recursive: true, force: true });
  });

  /** Each test gets its own, not yet existing, root. */
  function fresh(): LocalStore {
    root = join(parent, `root${++n}`);
    store = new LocalStore(root);
    return store;
  }

  void test('location is the resolved root; locate gives the file path', () => {
    fresh();
    assert.equal(store.location, root);
    assert.equal(store.locate(MANIFEST), join(root, MANIFEST));
    assert.equal(new LocalStore(`${root}/x/..`).location, root);
  });

  void test('putArtifact writes the stream; openArtifact reads it back with its size', async () => {
    fresh();
    const data = randomBytes(300_000);
    await store.putArtifact(ARTIFACT, Readable.from([data.subarray(0, 1_000), data.subarray(1_000)]));
    assert.ok((await readFile(join(root, ARTIFACT))).equals(data));
    const opened = await store.openArtifact(ARTIFACT);
    assert.equal(opened.bytes, data.length);
    assert.ok((await readAll(opened.stream)).equals(data));
  });

  void test('putArtifact replaces an existing object (a retry writes it again)', async () => {
    fresh();
    await store.putArtifact(ARTIFACT, Readable.from([Buffer.from('first version, longer')]));
    await store.putArtifact(ARTIFACT, Readable.from([Buffer.from('second')]));
    assert.equal(await readFile(join(root, ARTIFACT), 'utf8'), 'second');
  });

  void test('a failed putArtifact leaves neither the object nor a temp file', async () => {
    fresh();
    const failing = new Readable({
      read() {
        this.push(Buffer.from('partial'));
        this.destroy(new Error('source broke'));
      },
    });
    await assert.rejects(store.putArtifact(ARTIFACT, failing), /source broke/);
    assert.equal(await store.statObject(ARTIFACT), undefined);
    assert.deepEqual(await readdir(join(root, 'kimiclaw/L1', ID)), []);
  });

  void test('openArtifact of a missing key rejects with ENOENT', async () => {
    fresh();
    await assert.rejects(store.openArtifact(ARTIFACT), { code: 'ENOENT' });
  });

  void test('statObject gives size and mtime, undefined when missing', async () => {
    fresh();
    assert.equal(await store.statObject(ARTIFACT), undefined);
    const before = Date.now();
    await store.putArtifact(ARTIFACT, Readable.from([Buffer.alloc(1234, 1)]));
    const stat = await store.statObject(ARTIFACT);
    assert.equal(stat?.key, ARTIFACT);
    assert.equal(stat?.bytes, 1234);
    assert.ok(stat && stat.lastModified.getTime() >= before - 2_000);
  });

  void test('putJson writes pretty JSON with a newline; getText reads it; missing is undefined', async () => {
    fresh();
    const value = { format: 1, backupId: ID, nested: { list: [1, 2] } };
    await store.putJson(MANIFEST, value);
    const text = await store.getText(MANIFEST);
    assert.equal(text, `${JSON.stringify(value, null, 2)}\n`);
    assert.deepEqual(JSON.parse(text ?? ''), value);
    assert.equal(await store.getText(`kimiclaw/L1/${ID}/nothing.json`), undefined);
    await store.putJson(MANIFEST, { replaced: true });
    assert.deepEqual(JSON.parse((await store.getText(MANIFEST)) ?? ''), { replaced: true });
  });

  void test('list gives every file under a prefix with "/" keys, and skips temp files', async () => {
    fresh();
    const other = 'kimiclaw-L1-20261127T030000Z-0001';
    await store.putArtifact(ARTIFACT, Readable.from([Buffer.from('abc')]));
    await store.putJson(MANIFEST, {});
    await store.putJson(`kimiclaw/L1/${other}/manifest.json`, {});
    await store.putJson(`kimiclaw/L2/x/manifest.json`, {});
    await store.putJson(`audit/L1/${other}/manifest.json`, {});
    await writeFile(join(root, `kimiclaw/L1/${other}/manifest.json.tmp-123-456`), 'half');

    const listed = await store.list('kimiclaw/L1/');
    assert.deepEqual(
      listed.map((o) => o.key).sort(),
      [ARTIFACT, MANIFEST, `kimiclaw/L1/${other}/manifest.json`].sort(),
    );
    assert.equal(listed.find((o) => o.key === ARTIFACT)?.bytes, 3);
    for (const o of listed) assert.ok(o.lastModified instanceof Date);

    assert.equal((await store.list('')).length, 5);
    assert.deepEqual(await store.list('nothing/here/'), []);
  });

  void test('list of a store whose root does not exist is empty', async () => {
    fresh();
    assert.deepEqual(await store.list('kimiclaw/L1/'), []);
    assert.equal(existsSync(root), false);
  });

  void test('deleteKeys removes the files and the emptied backup folder; missing keys are fine', async () => {
    fresh();
    const keep = 'kimiclaw-L1-20261127T030000Z-0001';
    await store.putArtifact(ARTIFACT, Readable.from([Buffer.from('abc')]));
    await store.putJson(MANIFEST, {});
    await store.putJson(`kimiclaw/L1/${keep}/manifest.json`, {});

    await store.deleteKeys([ARTIFACT, MANIFEST, 'kimiclaw/L1/never-there/manifest.json']);
    assert.equal(existsSync(join(root, 'kimiclaw/L1', ID)), false);
    assert.deepEqual(
      (await store.list('kimiclaw/L1/')).map((o) => o.key),
      [`kimiclaw/L1/${keep}/manifest.json`],
    );
    // Retried prune: everything already gone.
    await store.deleteKeys([ARTIFACT, MANIFEST]);
    await store.deleteKeys([]);
  });

  void test('deleteKeys keeps a folder that still has files', async () => {
    fresh();
    await store.putArtifact(ARTIFACT, Readable.from([Buffer.from('abc')]));
    await store.putJson(MANIFEST, {});
    await store.deleteKeys([ARTIFACT]);
    assert.deepEqual(
      (await store.list('kimiclaw/L1/')).map((o) => o.key),
      [MANIFEST],
    );
  });

  void test('abortIncompleteUploads removes temp files older than the cutoff only', async () => {
    fresh();
    await store.putJson(MANIFEST, {});
    const folder = join(root, 'kimiclaw/L1', ID);
    const oldTmp = join(folder, 'kimiclaw.duckdb.zst.tmp-1-1');
    const newTmp = join(folder, 'manifest.json.tmp-2-2');
    await writeFile(oldTmp, 'old');
    await writeFile(newTmp, 'new');
    const hourAgo = new Date(Date.now() - 3_600_000);
    await utimes(oldTmp, hourAgo, hourAgo);

    assert.equal(await store.abortIncompleteUploads('kimiclaw/L1/', new Date(Date.now() - 60_000)), 1);
    assert.equal(existsSync(oldTmp), false);
    assert.equal(existsSync(newTmp), true);
    assert.equal(existsSync(join(root, MANIFEST)), true);

    assert.equal(await store.abortIncompleteUploads('kimiclaw/L1/'), 1);
    assert.deepEqual(await readdir(folder), ['manifest.json']);
    assert.equal(await store.abortIncompleteUploads('kimiclaw/L1/'), 0);
    assert.equal(await store.abortIncompleteUploads('missing/prefix/'), 0);
  });

  void test('keys that resolve outside the root throw', async () => {
    fresh();
    await mkdir(root, { recursive: true });
    const sibling = `../${basename(root)}-evil/x`;
    for (const key of ['../x', '/etc/passwd', 'kimiclaw/../../x', sibling]) {
      assert.throws(() => store.locate(key), /resolves outside the L1 directory/, key);
      await assert.rejects(store.putJson(key, {}), /resolves outside the L1 directory/, key);
      await assert.rejects(store.putArtifact(key, Readable.from([Buffer.from('x')])), /resolves outside/, key);
      await assert.rejects(store.openArtifact(key), /resolves outside/, key);
      await assert.rejects(store.statObject(key), /resolves outside/, key);
      await assert.rejects(store.getText(key), /resolves outside/, key);
      await assert.rejects(store.list(key), /resolves outside/, key);
      await assert.rejects(store.deleteKeys([key]), /resolves outside/, key);
      await assert.rejects(store.abortIncompleteUploads(key), /resolves outside/, key);
    }
    assert.equal(existsSync(join(parent, `${basename(root)}-evil`)), false);
    // Keys that stay inside after normalisation are fine.
    await store.putJson('kimiclaw/../kimiclaw/L1/a/manifest.json', { ok: true });
    assert.deepEqual(JSON.parse((await store.getText('kimiclaw/L1/a/manifest.json')) ?? ''), { ok: true });
  });

  // BUG (not asserted): list() skips any file whose *absolute* path contains ".tmp-", so a store
  // whose root directory has ".tmp-" in its name (e.g. mkdtemp("x.tmp-")) lists nothing at all.
});
