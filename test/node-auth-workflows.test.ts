/**
 * The node token against the whole system (Temporal, versitygw, etcd, two authenticated node
 * processes, the worker, the CLI): backups and a switchover reach the control routes with it, a
 * worker holding a refused token fails with a message naming the config field, and neither token
 * appears in any workflow history (inputs, results, failures, decoded), in the config's printed
 * forms, in the CLI's output or in any log the harness's processes wrote.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { inspect } from 'node:util';
import { KimiclawDr } from '../src/client';
import { openConfigCenter } from '../src/config-center';
import { startClusterWriter } from '../src/dev/cluster-writer';
import {
  EVENTS_CREDENTIAL,
  EVENTS_TOKEN,
  Harness,
  NODE_TOKEN,
  failureMessages,
  nodeHealth,
  runCli,
  waitFor,
} from './harness';

const KEY = '/services/kimiclaw/primary';
const REFUSED_TOKEN = randomBytes(32).toString('base64url');

/** Which tokens a text holds, by name: an assertion message never shows one. */
function tokensIn(text: string): string[] {
  const tokens = { 'control token': NODE_TOKEN, 'events token': EVENTS_TOKEN, 'refused token': REFUSED_TOKEN };
  return Object.entries(tokens).flatMap(([name, token]) => (text.includes(token) ? [name] : []));
}

/** Every string in a value, bytes decoded as UTF-8: a history's payloads as the worker wrote them. */
function textOf(value: unknown, out: string[] = [], seen = new Set<object>()): string[] {
  if (typeof value === 'string') out.push(value);
  else if (value instanceof Uint8Array) out.push(Buffer.from(value).toString('utf8'));
  else if (value !== null && typeof value === 'object' && !seen.has(value)) {
    seen.add(value);
    for (const v of Object.values(value)) textOf(v, out, seen);
  }
  return out;
}

void describe('the node token stays out of workflows, results, errors and logs', () => {
  let h: Harness;
  let dr: KimiclawDr;

  before(async () => {
    h = await Harness.start({ nodes: ['node1', 'node2'], cluster: true });
    dr = await KimiclawDr.connect(h.config);
  });
  after(async () => {
    await h?.stop();
  });

  void test('backups and a switchover through the control routes, then a refused credential', async () => {
    const center = openConfigCenter(h.config.cluster.configCenter);
    try {
      await center.compareAndSwap(KEY, '0', {
        node: 'node1',
        url: h.nodes[0]!.url,
        epoch: 1,
        since: new Date().toISOString(),
      });
      await waitFor('in sync', async () => (await nodeHealth(h.nodes[0]!.url)).syncState === 'in-sync');
      const writer = startClusterWriter(center, { token: EVENTS_CREDENTIAL, key: KEY });
      await waitFor('writes', async () => writer.acked.length >= 50);
      const l1 = await (await dr.startBackup({ tier: 'L1', reason: 'token hygiene' })).result();
      const l2 = await (await dr.startBackup({ tier: 'L2' })).result();
      assert.ok(l1.rows > 0 && l2.rows > 0);
      const moved = await (await dr.startSwitchover({ to: 'node2', reason: 'token hygiene' })).result();
      assert.equal(moved.to, 'node2');
      await waitFor('writes on node2', async () => writer.acks.some((a) => a.node === 'node2'));
      await writer.stop();
      assert.deepEqual(tokensIn(JSON.stringify([l1, l2, moved])), [], 'a workflow result holds a token');
    } finally {
      await center.close();
    }

    // A worker whose token the nodes do not accept: final at once, naming the field, not the token.
    const variant = await h.startVariant((base) => ({ ...base, nodeAuth: { token: REFUSED_TOKEN } }));
    const refused = await new KimiclawDr(h.client, variant.config).startBackup({ tier: 'L1', node: 'node2' });
    await assert.rejects(refused.result(), (err: unknown) => {
      const messages = failureMessages(err);
      assert.match(messages, /nodeAuth: node node2 at \S+ refused the configured credential \(HTTP 403/);
      assert.deepEqual(tokensIn(messages), [], 'the failure holds a token');
      return true;
    });
  });

  void test('no workflow history holds a token (inputs, results and failures, payloads decoded)', async () => {
    const histories: Array<{ id: string; text: string }> = [];
    await waitFor('the workflows listed', async () => {
      histories.length = 0;
      for await (const wf of h.client.workflow.list()) {
        const history = await h.client.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory();
        histories.push({ id: wf.workflowId, text: textOf(history).join('\n') });
      }
      return histories.filter((x) => x.id.startsWith('backup-')).length >= 3;
    });
    assert.ok(histories.some((x) => x.id.startsWith('switchover-')));
    // Payloads were decoded: the backup target's node URL is in them.
    assert.ok(histories.some((x) => x.text.includes(h.nodes[0]!.url)));
    for (const { id, text } of histories) assert.deepEqual(tokensIn(text), [], `the history of ${id} holds a token`);
  });

  void test("the config's printed forms, the CLI and every log hold no token", async () => {
    const token = h.config.nodeAuth.token!;
    assert.equal(token.authorization(), `Bearer ${NODE_TOKEN}`, "the config holds the token file's token");
    const printed = [JSON.stringify(h.config), inspect(h.config, { depth: null }), String(token), `${token}`];
    assert.deepEqual(tokensIn(printed.join('\n')), []);
    const status = await runCli(['cluster', 'status', '--json'], h.env());
    assert.equal(status.code, 0, status.stderr);
    assert.deepEqual(tokensIn(status.stdout + status.stderr), []);

    const files = (await readdir(h.logDir, { recursive: true })).map(String).filter((f) => f.endsWith('.log'));
    assert.ok(
      files.some((f) => f.startsWith('node-node1')),
      `the nodes' logs are kept: ${files.join(', ')}`,
    );
    for (const file of files) {
      const text = await readFile(join(h.logDir, file), 'utf8');
      assert.deepEqual(tokensIn(text), [], `${file} holds a token`);
    }
  });
});
