/**
 * The node API's credentials as pure logic: the token file format, who the node lets through, the
 * sources a node reads its tokens from, and the DR config's nodeAuth (env over file, the token
 * file read at load, errors naming the field and never the value).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { ConfigError, loadConfig, parseConfig } from '../../src/config';
import { HttpError } from '../../src/node/http';
import { NodeAuth } from '../../src/node/auth';
import { loadAuthSetup } from '../../src/node/auth-sources';
import { NodeToken, parseTokenFile, parseTokenList } from '../../src/node-token';

const CONTROL = 'control-token-0123456789abcdef';
const NEXT = 'next-control-token-0123456789';
const EVENTS = 'events-token-0123456789abcdef';

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/** The status a request gets: 200 when let through. */
function statusOf(auth: NodeAuth, headers: Record<string, string>, access: 'open' | 'events' | 'control'): number {
  try {
    auth.authorize(headers, access, 'POST /promote');
    return 200;
  } catch (err) {
    assert.ok(err instanceof HttpError);
    for (const t of [CONTROL, NEXT, EVENTS, 'wrong-token-0123456789abcdef']) {
      assert.ok(!err.message.includes(t), 'the refusal repeats a token');
    }
    return err.status;
  }
}

void describe('token files and lists', () => {
  void test('one token per line; blank lines, comments and surrounding spaces are skipped', () => {
    assert.deepEqual(parseTokenFile(`# rotation\n\n  ${NEXT}  \r\n${CONTROL}\n`, 'f'), [NEXT, CONTROL]);
    assert.deepEqual(parseTokenList(` ${CONTROL} ,${NEXT},`, 'ENV'), [CONTROL, NEXT]);
  });

  void test('a bad line is named by its number, never shown', () => {
    assert.throws(
      () => parseTokenFile(`${CONTROL}\nshort\n`, 'token file x'),
      (err: Error) => {
        assert.match(err.message, /^token file x line 2 is not a token: a token is 16-512 characters/);
        assert.doesNotMatch(err.message, /short/);
        return true;
      },
    );
    assert.throws(() => parseTokenList(`${CONTROL},has space in it 0123456789`, 'ENV'), /ENV: entry 2 is not a token/);
  });

  void test('a NodeToken prints as a placeholder in JSON, strings and util.inspect', () => {
    const token = new NodeToken(CONTROL);
    assert.equal(token.authorization(), `Bearer ${CONTROL}`);
    const printed = [JSON.stringify({ token }), String(token), `${token}`, inspect({ token })].join(' ');
    assert.ok(!printed.includes(CONTROL));
    assert.throws(() => new NodeToken('short'), /not a node token/);
  });
});

void describe('NodeAuth', () => {
  const auth = NodeAuth.bearer({ control: [CONTROL, NEXT], events: [EVENTS] });

  void test('control tokens open every route; the events token the event API only', () => {
    for (const token of [CONTROL, NEXT]) {
      assert.equal(statusOf(auth, bearer(token), 'control'), 200);
      assert.equal(statusOf(auth, bearer(token), 'events'), 200);
    }
    assert.equal(statusOf(auth, bearer(EVENTS), 'events'), 200);
    assert.equal(statusOf(auth, bearer(EVENTS), 'control'), 403);
    assert.ok(!inspect(auth, { depth: null }).includes(CONTROL), 'a logged NodeAuth shows a token');
  });

  void test('401 without a usable credential, 403 with one not accepted, nothing needed for open routes', () => {
    assert.equal(statusOf(auth, {}, 'events'), 401);
    assert.equal(statusOf(auth, { authorization: '' }, 'control'), 401);
    assert.equal(statusOf(auth, { authorization: `Basic ${CONTROL}` }, 'control'), 401);
    assert.equal(statusOf(auth, { authorization: `Bearer ${CONTROL} ${NEXT}` }, 'control'), 401);
    assert.equal(statusOf(auth, { authorization: `bearer  ${CONTROL}` }, 'control'), 200);
    assert.equal(statusOf(auth, bearer('wrong-token-0123456789abcdef'), 'events'), 403);
    assert.equal(statusOf(auth, bearer(`${CONTROL}0`), 'control'), 403);
    assert.equal(statusOf(auth, {}, 'open'), 200);
  });

  void test('sends its first control token; replace() swaps the sets at once', () => {
    const rotating = NodeAuth.bearer({ control: [CONTROL], events: [] });
    assert.deepEqual(rotating.authorizationHeader(), bearer(CONTROL));
    rotating.replace({ control: [NEXT, CONTROL], events: [EVENTS] });
    assert.deepEqual(rotating.authorizationHeader(), bearer(NEXT));
    assert.equal(statusOf(rotating, bearer(EVENTS), 'events'), 200);
    rotating.replace({ control: [NEXT], events: [] });
    assert.equal(statusOf(rotating, bearer(CONTROL), 'control'), 403);
    assert.throws(() => rotating.replace({ control: [], events: [EVENTS] }), /at least one control token/);
    assert.deepEqual(rotating.counts, { control: 1, events: 0 });
  });

  void test('an open node lets everyone in and sends nothing', () => {
    const open = NodeAuth.open();
    assert.equal(open.mode, 'none');
    assert.equal(statusOf(open, {}, 'control'), 200);
    assert.deepEqual(open.authorizationHeader(), {});
  });
});

void describe('where a node reads its tokens', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kimiclaw-auth-unit-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  void test('files or environment variables; one source per set', async () => {
    const file = join(dir, 'control');
    await writeFile(file, `${CONTROL}\n${NEXT}\n`);
    assert.deepEqual(loadAuthSetup({ tokenFile: file, insecure: false, env: { KIMICLAW_EVENTS_TOKENS: EVENTS } }), {
      mode: 'bearer',
      tokens: { control: [CONTROL, NEXT], events: [EVENTS] },
    });
    assert.throws(
      () => loadAuthSetup({ tokenFile: file, insecure: false, env: { KIMICLAW_NODE_TOKENS: CONTROL } }),
      /give --token-file or KIMICLAW_NODE_TOKENS, not both/,
    );
    assert.throws(
      () => loadAuthSetup({ tokenFile: join(dir, 'missing'), insecure: false, env: {} }),
      /cannot read token file \S+missing: ENOENT/,
    );
    await writeFile(join(dir, 'comments'), '# nothing yet\n');
    assert.throws(
      () => loadAuthSetup({ tokenFile: join(dir, 'comments'), insecure: false, env: {} }),
      /holds no token/,
    );
  });

  void test('no control token: refused, unless run open on purpose (and then with no tokens at all)', () => {
    assert.throws(() => loadAuthSetup({ insecure: false, env: {} }), /no control token: give --token-file/);
    assert.throws(
      () => loadAuthSetup({ insecure: false, env: { KIMICLAW_EVENTS_TOKENS: EVENTS } }),
      /event API tokens alone would leave the control routes open/,
    );
    assert.deepEqual(loadAuthSetup({ insecure: true, env: {} }), { mode: 'none' });
    assert.throws(
      () => loadAuthSetup({ insecure: true, env: { KIMICLAW_NODE_TOKENS: CONTROL } }),
      /--insecure-no-auth runs the node open/,
    );
  });
});

void describe('config nodeAuth', () => {
  let dir: string;
  const minimal = (extra: Record<string, unknown> = {}) => ({
    storage: { bucket: 'my-bucket' },
    databases: [{ name: 'kimiclaw', nodes: [{ id: 'n1', url: 'http://127.0.0.1:7070', dataDir: '/d' }] }],
    ...extra,
  });
  const problemsOf = (fn: () => unknown): string[] => {
    try {
      fn();
    } catch (err) {
      assert.ok(err instanceof ConfigError, String(err));
      for (const t of [CONTROL, NEXT, 'short']) assert.ok(!err.message.includes(t), 'the error repeats a value');
      return err.problems;
    }
    return assert.fail('expected a ConfigError');
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kimiclaw-nodeauth-'));
    await writeFile(join(dir, 'node-token'), `# DR's token\n${CONTROL}\n${NEXT}\n`);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  void test('none by default; a token file is read at load (its first token), relative to the config file', async () => {
    assert.equal(parseConfig(minimal()).nodeAuth.token, undefined);
    const file = join(dir, 'dr.json');
    await writeFile(file, JSON.stringify(minimal({ nodeAuth: { tokenFile: 'node-token' } })));
    const config = loadConfig({ file, env: {} });
    assert.equal(config.nodeAuth.tokenFile, join(dir, 'node-token'));
    assert.equal(config.nodeAuth.token?.authorization(), `Bearer ${CONTROL}`);
    assert.ok(!JSON.stringify(config).includes(CONTROL), 'the config prints without the token');
  });

  void test('KIMICLAW_NODE_TOKEN and KIMICLAW_NODE_TOKEN_FILE win over the file', async () => {
    const file = join(dir, 'dr-env.json');
    await writeFile(file, JSON.stringify(minimal({ nodeAuth: { tokenFile: 'elsewhere' } })));
    assert.equal(
      loadConfig({ file, env: { KIMICLAW_NODE_TOKEN: NEXT } }).nodeAuth.token?.authorization(),
      `Bearer ${NEXT}`,
    );
    const fromFile = loadConfig({ file, env: { KIMICLAW_NODE_TOKEN_FILE: join(dir, 'node-token') } });
    assert.equal(fromFile.nodeAuth.token?.authorization(), `Bearer ${CONTROL}`);
  });

  void test('bad values are named by field (and env variable), never shown', async () => {
    assert.deepEqual(
      problemsOf(() => parseConfig(minimal({ nodeAuth: { token: 'short' } }))),
      ['nodeAuth.token: a token is 16-512 characters of A-Z a-z 0-9 - . _ ~ + / (then any "=" padding)'],
    );
    assert.deepEqual(
      problemsOf(() => parseConfig(minimal({ nodeAuth: { token: CONTROL, tokenFile: 'x' } }))),
      ['nodeAuth: give "token" or "tokenFile", not both'],
    );
    const file = join(dir, 'dr-bad.json');
    await writeFile(file, JSON.stringify(minimal()));
    assert.deepEqual(
      problemsOf(() => loadConfig({ file, env: { KIMICLAW_NODE_TOKEN_FILE: join(dir, 'missing') } })),
      [`nodeAuth.tokenFile (env KIMICLAW_NODE_TOKEN_FILE): cannot read token file ${join(dir, 'missing')}: ENOENT`],
    );
    assert.deepEqual(
      problemsOf(() => loadConfig({ file, env: { KIMICLAW_NODE_TOKEN: 'short' } })),
      [
        'nodeAuth.token (env KIMICLAW_NODE_TOKEN): a token is 16-512 characters of A-Z a-z 0-9 - . _ ~ + / (then any "=" padding)',
      ],
    );
  });
});
