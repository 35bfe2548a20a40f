/**
 * The node API's credentials, against real node processes: every route but GET /health refuses a
 * caller without an accepted token (401/403) and changes nothing; an events token opens the event
 * API only; several control tokens work at once and the token files are read again on SIGHUP; a
 * node without a token refuses to start unless told to run open; a primary sends its control
 * token to its replicas. No answer, and no /health, holds a token.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { NodeProcess } from '../src/dev/node-process';
import { freePort } from '../src/net';
import { EVENTS_TOKEN, NODE_TOKEN } from './credentials';
import { testNode, waitFor } from './harness';

/** A second control token, as during a rotation. */
const SECOND_TOKEN = randomBytes(32).toString('base64url');
const WRONG_TOKEN = randomBytes(32).toString('base64url');
const TOKENS = [NODE_TOKEN, SECOND_TOKEN, EVENTS_TOKEN, WRONG_TOKEN];

interface Reply {
  status: number;
  headers: Headers;
  text: string;
  body: { error?: { code: string; message: string } } & Record<string, unknown>;
}

async function call(
  url: string,
  method: string,
  options: { token?: string; authorization?: string; body?: string; headers?: Record<string, string> } = {},
): Promise<Reply> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.body !== undefined) headers['content-type'] ??= 'application/json';
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
  if (options.authorization !== undefined) headers.authorization = options.authorization;
  const res = await fetch(url, { method, headers, body: options.body, signal: AbortSignal.timeout(30_000) });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, body: JSON.parse(text) as Reply['body'] };
}

/** Says which of the test's tokens a text holds, by name: a failure message never shows one. */
function tokensIn(text: string): string[] {
  const names = ['control token', 'second control token', 'events token', 'wrong token'];
  return TOKENS.flatMap((t, i) => (text.includes(t) ? [names[i]!] : []));
}

async function filesUnder(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).map(String).sort();
}

const json = (value: unknown) => JSON.stringify(value);

void describe('node authentication (a real node process)', () => {
  let dir: string;
  let node: NodeProcess;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kimiclaw-auth-'));
    node = testNode('node1', dir);
    node.env = { KIMICLAW_NODE_TOKENS: `${NODE_TOKEN},${SECOND_TOKEN}`, KIMICLAW_EVENTS_TOKENS: EVENTS_TOKEN };
    await node.start();
    const events = json({
      events: [
        { kind: 'seed', payload: { n: 1 } },
        { kind: 'seed', payload: { n: 2 } },
      ],
    });
    for (let i = 0; i < 3; i++) {
      assert.equal((await call(`${node.url}/events`, 'POST', { token: NODE_TOKEN, body: events })).status, 200);
    }
  });
  after(async () => {
    await node?.stop('SIGKILL');
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /**
   * Requests that would change the node (or read it) when allowed. `access` is the least
   * credential the route takes; the control routes are what a writing client must not reach.
   */
  const requests = (dataDir: string) => [
    { method: 'GET', path: '/stats', access: 'events' },
    { method: 'GET', path: '/events?afterLsn=0', access: 'events' },
    { method: 'POST', path: '/events', access: 'events', body: json({ events: [{ kind: 'x', payload: 1 }] }) },
    { method: 'POST', path: '/promote', access: 'control', body: json({ epoch: 7, replicas: [] }) },
    { method: 'POST', path: '/demote', access: 'control', body: json({ epoch: 7 }) },
    { method: 'POST', path: '/maintenance', access: 'control', body: json({ enabled: true, reason: 'stolen' }) },
    { method: 'POST', path: '/snapshot', access: 'control', body: json({ path: join(dataDir, 'stolen.duckdb') }) },
    { method: 'GET', path: '/replication', access: 'control' },
    { method: 'POST', path: '/replication', access: 'control', body: json({ epoch: 1, allowDegraded: true }) },
    {
      method: 'POST',
      path: '/replicate',
      access: 'control',
      body: json({
        epoch: 7,
        primary: { id: 'rogue', url: 'http://127.0.0.1:9' },
        history: [{ epoch: 7, startLsn: 3 }],
        events: [{ id: 7, lsn: 4, ts: '2026-01-01T00:00:00.000000Z', kind: 'x', payload: '1' }],
      }),
    },
    {
      method: 'POST',
      path: '/replication/snapshot',
      access: 'control',
      body: 'not a database',
      headers: {
        'content-type': 'application/octet-stream',
        'x-kimiclaw-snapshot': json({
          epoch: 7,
          primary: { id: 'rogue', url: 'http://127.0.0.1:9' },
          history: [],
          lsn: 0,
          fingerprint: { rows: 0, minId: null, maxId: null, maxLsn: null, checksum: '0' },
        }),
      },
    },
    // Not a route: refused before the 404 that would list the routes.
    { method: 'POST', path: '/fence', access: 'events', body: json({ epoch: 7 }) },
  ];

  /** Everything a refused request could have changed. */
  async function state() {
    const health = (await call(`${node.url}/health`, 'GET')).body;
    const stats = (await call(`${node.url}/stats`, 'GET', { token: NODE_TOKEN })).body;
    const { status, role, epoch, lsn, rows, allowDegraded, syncState, history, replicas } = health;
    return {
      health: { status, role, epoch, lsn, rows, allowDegraded, syncState, history, replicas },
      fingerprint: { rows: stats.rows, maxLsn: stats.maxLsn, checksum: stats.checksum },
      files: await filesUnder(node.dataDir),
    };
  }

  void test('every route but GET /health refuses a missing, malformed or wrong credential, and changes nothing', async () => {
    const before = await state();
    assert.equal(before.health.lsn, 3);
    const cases = [
      { name: 'no Authorization header', options: {}, status: 401 },
      { name: 'an empty header', options: { authorization: '' }, status: 401 },
      { name: 'another scheme', options: { authorization: `Basic ${NODE_TOKEN}` }, status: 401 },
      { name: '"Bearer" without a token', options: { authorization: 'Bearer' }, status: 401 },
      { name: 'a wrong token', options: { token: WRONG_TOKEN }, status: 403 },
      { name: 'a wrong token longer than any accepted', options: { token: `${NODE_TOKEN}x` }, status: 403 },
      { name: 'a prefix of an accepted token', options: { token: NODE_TOKEN.slice(0, 20) }, status: 403 },
    ];
    for (const request of requests(node.dataDir)) {
      const what = `${request.method} ${request.path}`;
      for (const c of cases) {
        const reply = await call(`${node.url}${request.path}`, request.method, {
          ...c.options,
          body: request.body,
          headers: request.headers,
        });
        assert.equal(reply.status, c.status, `${what} with ${c.name}: ${reply.body.error?.code}`);
        assert.equal(reply.body.error?.code, c.status === 401 ? 'Unauthorized' : 'Forbidden', `${what}, ${c.name}`);
        assert.match(reply.body.error.message, new RegExp(`^${request.method} /`), `${what}: the message names it`);
        if (c.status === 401) assert.match(reply.headers.get('www-authenticate') ?? '', /^Bearer/, what);
        assert.deepEqual(tokensIn(reply.text), [], `${what} with ${c.name}: the answer holds a token`);
      }
      if (request.access === 'control') {
        const reply = await call(`${node.url}${request.path}`, request.method, {
          token: EVENTS_TOKEN,
          body: request.body,
          headers: request.headers,
        });
        assert.equal(reply.status, 403, `${what} with the events token`);
        assert.match(reply.body.error!.message, /needs a control credential/);
        assert.deepEqual(tokensIn(reply.text), [], `${what}: the answer holds a token`);
      }
    }
    assert.deepEqual(await state(), before, 'a refused request changed the node');
    assert.ok(!existsSync(join(node.dataDir, 'stolen.duckdb')));
  });

  void test('the same requests with a control token are served (the refusals above were not for a bad body)', async () => {
    const snapshot = join(node.dataDir, 'granted.duckdb');
    const snap = await call(`${node.url}/snapshot`, 'POST', { token: SECOND_TOKEN, body: json({ path: snapshot }) });
    assert.equal(snap.status, 200, snap.text);
    assert.ok(existsSync(snapshot));
    const on = await call(`${node.url}/maintenance`, 'POST', {
      token: NODE_TOKEN,
      body: json({ enabled: true, reason: 'test' }),
    });
    assert.equal(on.status, 200, on.text);
    const off = await call(`${node.url}/maintenance`, 'POST', { token: NODE_TOKEN, body: json({ enabled: false }) });
    assert.equal(off.status, 200, off.text);
    const set = await call(`${node.url}/replication`, 'POST', {
      token: NODE_TOKEN,
      body: json({ epoch: 1, allowDegraded: true }),
    });
    assert.equal(set.status, 200, set.text);
    assert.equal(set.body.allowDegraded, true);
    const unknown = await call(`${node.url}/fence`, 'POST', { token: EVENTS_TOKEN, body: '{}' });
    assert.equal(unknown.status, 404, 'any accepted credential may see the route list');
  });

  void test('the event API takes the events token and every control token; both control tokens work (rotation)', async () => {
    const body = json({ events: [{ kind: 'writer', payload: { ok: true } }] });
    for (const token of [EVENTS_TOKEN, NODE_TOKEN, SECOND_TOKEN]) {
      assert.equal((await call(`${node.url}/events`, 'POST', { token, body })).status, 200);
      assert.equal((await call(`${node.url}/events?afterLsn=0`, 'GET', { token })).status, 200);
      assert.equal((await call(`${node.url}/stats`, 'GET', { token })).status, 200);
    }
    for (const token of [NODE_TOKEN, SECOND_TOKEN]) {
      assert.equal((await call(`${node.url}/replication`, 'GET', { token })).status, 200);
    }
    // The scheme is case-insensitive (RFC 7235).
    assert.equal((await call(`${node.url}/stats`, 'GET', { authorization: `bearer ${EVENTS_TOKEN}` })).status, 200);
  });

  void test('GET /health needs no credential, says the node requires one, and holds no token', async () => {
    const health = await call(`${node.url}/health`, 'GET');
    assert.equal(health.status, 200);
    assert.equal(health.body.auth, 'bearer');
    assert.deepEqual(tokensIn(health.text), []);
    const withToken = await call(`${node.url}/health`, 'GET', { token: NODE_TOKEN });
    assert.deepEqual(tokensIn(withToken.text), []);
  });
});

void describe('where a node finds its tokens', () => {
  let dir: string;
  const started: NodeProcess[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kimiclaw-auth-files-'));
  });
  after(async () => {
    await Promise.all(started.map((n) => n.stop('SIGKILL')));
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const start = async (node: NodeProcess): Promise<NodeProcess> => {
    started.push(node);
    await node.start();
    return node;
  };
  const statusWith = async (node: NodeProcess, token: string) =>
    (await call(`${node.url}/replication`, 'GET', { token })).status;

  void test('token files: read at start, and again on SIGHUP (rotation without a restart)', async () => {
    const controlFile = join(dir, 'control-tokens');
    const eventsFile = join(dir, 'events-tokens');
    await writeFile(controlFile, `# control tokens\n\n  ${NODE_TOKEN}  \n`, { mode: 0o600 });
    await writeFile(eventsFile, `${EVENTS_TOKEN}\n`, { mode: 0o600 });
    const node = testNode('files', dir);
    node.env = {};
    node.args = ['--token-file', controlFile, '--events-token-file', eventsFile];
    node.logFile = join(dir, 'files.log');
    await start(node);
    assert.equal(await statusWith(node, NODE_TOKEN), 200);
    assert.equal(await statusWith(node, EVENTS_TOKEN), 403);
    assert.equal((await call(`${node.url}/stats`, 'GET', { token: EVENTS_TOKEN })).status, 200);

    // Rotation: the new token next to the old, reload; clients move over; the old one goes.
    await writeFile(controlFile, `${SECOND_TOKEN}\n${NODE_TOKEN}\n`);
    node.signal('SIGHUP');
    await waitFor('the new token accepted', async () => (await statusWith(node, SECOND_TOKEN)) === 200);
    assert.equal(await statusWith(node, NODE_TOKEN), 200, 'the old token still works during the rotation');
    await writeFile(controlFile, `${SECOND_TOKEN}\n`);
    node.signal('SIGHUP');
    await waitFor('the old token refused', async () => (await statusWith(node, NODE_TOKEN)) === 403);
    assert.equal(await statusWith(node, SECOND_TOKEN), 200);

    // A bad file on reload keeps the tokens the node had, and the node keeps running.
    await writeFile(controlFile, 'not a token\n');
    node.signal('SIGHUP');
    const log = await waitFor('the failed reload in the log', async () => {
      const text = await readFile(node.logFile!, 'utf8');
      return text.includes('"event":"auth_reload_failed"') ? text : undefined;
    });
    assert.match(log, /token file \S+ line 1 is not a token/);
    assert.deepEqual(tokensIn(log), [], 'the log holds no token');
    assert.equal(await statusWith(node, SECOND_TOKEN), 200);
    assert.ok(node.running);
  });

  void test('without a control token a node refuses to start and writes nothing; --insecure-no-auth runs it open and says so', async () => {
    const refused = testNode('no-token', dir);
    refused.env = { KIMICLAW_NODE_TOKENS: '', KIMICLAW_EVENTS_TOKENS: EVENTS_TOKEN };
    await assert.rejects(start(refused), /no control token/);
    assert.deepEqual(await filesUnder(refused.dataDir), [], 'the refused node created no file');

    const both = testNode('both', dir);
    both.args = ['--token-file', join(dir, 'control-tokens')];
    await assert.rejects(start(both), /give --token-file or KIMICLAW_NODE_TOKENS, not both/);

    const weak = testNode('weak', dir);
    weak.env = { KIMICLAW_NODE_TOKENS: 'secret' };
    await assert.rejects(start(weak), (err: Error) => {
      assert.match(err.message, /KIMICLAW_NODE_TOKENS: entry 1 is not a token: a token is 16-512 characters/);
      assert.doesNotMatch(err.message, /secret/, 'the refusal does not repeat the value');
      return true;
    });

    const open = testNode('open', dir);
    open.env = { KIMICLAW_NODE_TOKENS: '', KIMICLAW_EVENTS_TOKENS: '' };
    open.args = ['--insecure-no-auth'];
    open.logFile = join(dir, 'open.log');
    await start(open);
    const health = await call(`${open.url}/health`, 'GET');
    assert.equal(health.body.auth, 'none');
    const write = await call(`${open.url}/events`, 'POST', { body: json({ events: [{ kind: 'x', payload: 1 }] }) });
    assert.equal(write.status, 200);
    const log = await readFile(open.logFile, 'utf8');
    assert.match(log, /"event":"auth_disabled".*THIS NODE ACCEPTS EVERY CALLER/);
  });

  void test('a primary sends its control token to its replicas; a replica that does not share it gets nothing', async () => {
    const [p1, p2, p3] = [await freePort(), await freePort(), await freePort()];
    const replica = testNode('replica', dir, 'kimiclaw', p2);
    replica.args = ['--role', 'replica'];
    const stranger = testNode('stranger', dir, 'kimiclaw', p3);
    stranger.args = ['--role', 'replica'];
    stranger.env = { KIMICLAW_NODE_TOKENS: WRONG_TOKEN, KIMICLAW_EVENTS_TOKENS: EVENTS_TOKEN };
    const primary = testNode('primary', dir, 'kimiclaw', p1);
    // The first token of the list is the one sent: rotation puts the new one first everywhere.
    primary.env = { KIMICLAW_NODE_TOKENS: `${NODE_TOKEN},${SECOND_TOKEN}`, KIMICLAW_EVENTS_TOKENS: EVENTS_TOKEN };
    primary.args = [
      '--role',
      'primary',
      '--replica',
      `replica=http://127.0.0.1:${p2},sync`,
      '--replica',
      `stranger=http://127.0.0.1:${p3},async`,
    ];
    await Promise.all([start(replica), start(stranger)]);
    await start(primary);
    const body = json({ events: [{ kind: 'replicated', payload: { n: 1 } }] });
    const ack = await call(`${primary.url}/events`, 'POST', { token: EVENTS_TOKEN, body });
    assert.equal(ack.status, 200, ack.text);
    type Link = { id: string; state: string; lastError: string | null };
    const links = await waitFor('the stranger refusing the primary', async () => {
      const health = await call(`${primary.url}/health`, 'GET');
      const replicas = health.body.replicas as Link[];
      const refused = replicas.find((r) => r.id === 'stranger')?.lastError?.includes('403');
      return refused ? replicas : undefined;
    });
    assert.equal(links.find((r) => r.id === 'replica')?.state, 'in-sync');
    assert.deepEqual(tokensIn(json(links)), []);
    assert.equal((await call(`${replica.url}/health`, 'GET')).body.lsn, 1);
    assert.equal((await call(`${stranger.url}/health`, 'GET')).body.lsn, 0, 'the stranger took nothing');
  });
});
