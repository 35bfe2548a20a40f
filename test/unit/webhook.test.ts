import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { z } from 'zod';
import { describeZodIssues } from '../../src/config';
import { ConfigProblem, Unavailable } from '../../src/errors';
import { startWebhookReceiver, type WebhookReceiver } from '../../src/notify/receiver';
import {
  WebhookRejected,
  WebhookTargetSchema,
  WebhookUnavailable,
  deliverWebhook,
  signPayload,
  validateWebhookUrl,
  verifySignature,
  type PrimaryChangeEvent,
} from '../../src/notify/webhook';

const FIELD = 'cluster.webhooks[0].url';

function event(deliveryId = 'kimiclaw/epoch-7', extra: Partial<PrimaryChangeEvent> = {}): PrimaryChangeEvent {
  return {
    type: 'primary-changed',
    cluster: 'prod',
    database: 'kimiclaw',
    primary: { node: 'n2', url: 'http://10.0.0.2:7070' },
    previous: { node: 'n1', url: 'http://10.0.0.1:7070' },
    epoch: 7,
    reason: 'n1 stopped answering health checks',
    kind: 'failover',
    at: '2025-01-02T03:04:05.000Z',
    deliveryId,
    ...extra,
  };
}

/** The error a call throws; fails when it resolves. */
async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof Error, `expected an Error, got ${String(err)}`);
    return err;
  }
  assert.fail('expected the call to throw');
}

/** The message of the error a function throws; fails when it returns. */
function thrownMessage(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigProblem, `expected a ConfigProblem, got ${String(err)}`);
    return err.message;
  }
  assert.fail('expected a throw');
}

void describe('validateWebhookUrl', () => {
  test('accepts absolute http and https URLs and returns them normalised', () => {
    assert.equal(validateWebhookUrl('https://hooks.example.com/dr?x=1', FIELD), 'https://hooks.example.com/dr?x=1');
    assert.equal(validateWebhookUrl('http://127.0.0.1:8080', FIELD), 'http://127.0.0.1:8080/');
    assert.equal(validateWebhookUrl('HTTPS://Example.COM/a', FIELD), 'https://example.com/a');
  });

  test('refuses other schemes, naming the field and what is accepted', () => {
    const message = thrownMessage(() => validateWebhookUrl('ftp://x', FIELD));
    assert.equal(message, `${FIELD}: "ftp://x" is not an http(s) URL; expected http://… or https://…`);
    assert.match(
      thrownMessage(() => validateWebhookUrl('file:///etc/passwd', FIELD)),
      /not an http\(s\) URL/,
    );
    // Looks like host:port but parses as the scheme "localhost:".
    assert.match(
      thrownMessage(() => validateWebhookUrl('localhost:8080/hook', FIELD)),
      /not an http\(s\) URL/,
    );
  });

  test('refuses relative URLs and garbage', () => {
    for (const bad of ['/hooks/dr', 'hooks.example.com/dr', 'not a url', 'http://']) {
      const message = thrownMessage(() => validateWebhookUrl(bad, FIELD));
      assert.ok(message.startsWith(`${FIELD}: `), message);
      assert.match(message, /is not an absolute URL; expected http:\/\/… or https:\/\/…/);
      assert.ok(message.includes(JSON.stringify(bad)), message);
    }
    assert.equal(
      thrownMessage(() => validateWebhookUrl('  ', FIELD)),
      `${FIELD}: is empty; expected http://… or https://…`,
    );
  });

  test('refuses credentials in the URL without echoing the password', () => {
    const message = thrownMessage(() => validateWebhookUrl('https://ops:hunter2@hooks.example.com/dr', FIELD));
    assert.ok(message.startsWith(`${FIELD}: `), message);
    assert.match(message, /carries credentials/);
    assert.match(message, /secret/);
    assert.ok(!message.includes('hunter2'), message);
    assert.match(
      thrownMessage(() => validateWebhookUrl('http://token@hooks.example.com/', FIELD)),
      /credentials/,
    );
  });

  test('the zod schema applies the same check, reported at the field path', () => {
    assert.deepEqual(WebhookTargetSchema.parse({ url: 'https://a.example/x', secret: 's', name: 'billing' }), {
      url: 'https://a.example/x',
      secret: 's',
      name: 'billing',
    });
    const Cluster = z.object({ webhooks: z.array(WebhookTargetSchema) });
    const result = Cluster.safeParse({
      webhooks: [{ url: 'https://ok.example/' }, { url: 'ftp://x' }, { url: 'https://a:b@c.example/', secret: '' }],
    });
    assert.equal(result.success, false);
    assert.deepEqual(describeZodIssues(result.error!), [
      'webhooks.1.url: "ftp://x" is not an http(s) URL; expected http://… or https://…',
      'webhooks.2.url: "https://***@c.example/" carries credentials (user:password@); expected http://… or ' +
        'https://… without them, and set "secret" so the receiver can verify the signature instead',
      'webhooks.2.secret: must not be empty; leave it out to send unsigned',
    ]);
  });
});

void describe('signPayload / verifySignature', () => {
  const body = '{"a":1}';

  test('signs "<t>.<body>" with HMAC-SHA256 (matches an independently computed vector)', () => {
    // printf '%s' '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret
    assert.equal(
      signPayload(body, 'secret', 1_700_000_000),
      't=1700000000,v1=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686',
    );
  });

  test('round trip within the tolerance', () => {
    const now = Math.floor(Date.now() / 1000);
    assert.equal(verifySignature(body, signPayload(body, 'secret', now), 'secret'), true);
    const header = signPayload(body, 'secret', 1_000);
    assert.equal(verifySignature(body, header, 'secret', 300, 1_000), true);
    assert.equal(verifySignature(body, header, 'secret', 300, 1_300), true, 'exactly at the tolerance');
  });

  test('rejects a tampered body, a wrong secret and a rewritten timestamp', () => {
    const header = signPayload(body, 'secret', 1_000);
    assert.equal(verifySignature('{"a":2}', header, 'secret', 300, 1_000), false);
    assert.equal(verifySignature(body, header, 'other', 300, 1_000), false);
    assert.equal(verifySignature(body, header.replace('t=1000', 't=1001'), 'secret', 300, 1_000), false);
  });

  test('rejects old and far-future timestamps', () => {
    const header = signPayload(body, 'secret', 1_000);
    assert.equal(verifySignature(body, header, 'secret', 300, 1_301), false);
    assert.equal(verifySignature(body, header, 'secret', 300, 699), false);
    assert.equal(verifySignature(body, header, 'secret', 600, 1_301), true);
  });

  test('rejects malformed headers and accepts any of several v1 entries (secret rotation)', () => {
    for (const bad of [undefined, '', 'garbage', 't=1000', 'v1=abc', 't=x,v1=' + 'a'.repeat(64)]) {
      assert.equal(verifySignature(body, bad, 'secret', 300, 1_000), false, String(bad));
    }
    const good = signPayload(body, 'new', 1_000);
    const old = signPayload(body, 'old', 1_000).split(',')[1];
    assert.equal(verifySignature(body, `${good},${old}`, 'old', 300, 1_000), true);
    assert.equal(verifySignature(body, `${good},${old}`, 'new', 300, 1_000), true);
    assert.equal(verifySignature(body, `${good},${old}`, 'third', 300, 1_000), false);
  });
});

void describe('deliverWebhook against a real receiver', () => {
  const receivers: WebhookReceiver[] = [];
  async function receiver(opts: Parameters<typeof startWebhookReceiver>[0] = {}): Promise<WebhookReceiver> {
    const r = await startWebhookReceiver(opts);
    receivers.push(r);
    return r;
  }
  after(async () => {
    await Promise.all(receivers.map((r) => r.close()));
  });

  test('delivers a signed event with the expected headers', async () => {
    const r = await receiver({ secret: 'shh' });
    const sent = event('d-success');
    const result = await deliverWebhook({ url: r.url, secret: 'shh', name: 'billing' }, sent);
    assert.equal(result.status, 200);
    assert.ok(result.ms >= 0 && result.ms < 5_000, `ms = ${result.ms}`);
    assert.equal(r.requests, 1);
    assert.equal(r.received.length, 1);
    const got = r.received[0]!;
    assert.equal(got.deliveryId, 'd-success');
    assert.equal(got.signatureValid, true);
    assert.deepEqual(got.event, sent);
    assert.equal(got.headers['content-type'], 'application/json');
    assert.equal(got.headers['x-kimiclaw-delivery'], 'd-success');
    assert.equal(got.headers['x-kimiclaw-event'], 'primary-changed');
    assert.equal(got.headers['user-agent'], 'kimiclaw-dr');
    assert.match(String(got.headers['x-kimiclaw-signature']), /^t=\d+,v1=[0-9a-f]{64}$/);
  });

  test('without a secret the POST is unsigned', async () => {
    const r = await receiver();
    await deliverWebhook({ url: r.url }, event('d-unsigned'));
    assert.equal(r.received[0]?.signatureValid, undefined);
    assert.equal(r.received[0]?.headers['x-kimiclaw-signature'], undefined);
  });

  test('503 is WebhookUnavailable (retryable); the retry with the same id is delivered', async () => {
    const r = await receiver({ failFirst: 1 });
    const err = await rejection(deliverWebhook({ url: r.url }, event('d-503')));
    assert.ok(err instanceof WebhookUnavailable, String(err));
    assert.ok(err instanceof Unavailable, 'classified as retryable by activities/failures.ts');
    assert.equal(err.retryable, true);
    assert.equal(err.status, 503);
    assert.ok(err.message.includes(r.url), err.message);
    assert.match(err.message, /HTTP 503/);
    assert.equal(r.received.length, 0);

    assert.equal((await deliverWebhook({ url: r.url }, event('d-503'))).status, 200);
    assert.equal(r.requests, 2);
    assert.deepEqual(
      r.received.map((d) => d.deliveryId),
      ['d-503'],
    );
  });

  test('408 and 429 are retryable, other 4xx are not', async () => {
    for (const status of [408, 429, 500, 502]) {
      const r = await receiver({ failFirst: 1, failStatus: status });
      const err = await rejection(deliverWebhook({ url: r.url }, event(`d-${status}`)));
      assert.ok(err instanceof WebhookUnavailable, `${status}: ${String(err)}`);
      assert.equal(err.status, status);
    }
    for (const status of [401, 403, 404, 410]) {
      const r = await receiver({ failFirst: 1, failStatus: status });
      const err = await rejection(deliverWebhook({ url: r.url }, event(`d-${status}`)));
      assert.ok(err instanceof WebhookRejected, `${status}: ${String(err)}`);
      assert.equal(err.status, status);
    }
  });

  test('400 is WebhookRejected (final), naming the url, the status and the body', async () => {
    const r = await receiver({ failFirst: 1, failStatus: 400 });
    const err = await rejection(deliverWebhook({ url: r.url, name: 'billing' }, event('d-400')));
    assert.ok(err instanceof WebhookRejected, String(err));
    assert.ok(err instanceof ConfigProblem, 'classified as final by activities/failures.ts');
    assert.equal(err.retryable, false);
    assert.equal(err.status, 400);
    assert.equal(err.url, r.url);
    assert.ok(err.message.includes(r.url), err.message);
    assert.ok(err.message.includes('"billing"'), err.message);
    assert.match(err.message, /HTTP 400/);
    assert.match(err.message, /receiver fails the first 1 requests/);
  });

  test('a wrong secret is refused by the receiver: WebhookRejected 401', async () => {
    const r = await receiver({ secret: 'right' });
    const err = await rejection(deliverWebhook({ url: r.url, secret: 'wrong' }, event('d-401')));
    assert.ok(err instanceof WebhookRejected, String(err));
    assert.equal(err.status, 401);
    assert.equal(r.received.length, 0);
  });

  test('a timeout is WebhookUnavailable and does not wait for the slow receiver', async () => {
    const r = await receiver({ delayMs: 2_000 });
    const started = Date.now();
    const err = await rejection(deliverWebhook({ url: r.url }, event('d-timeout'), { timeoutMs: 100 }));
    assert.ok(err instanceof WebhookUnavailable, String(err));
    assert.equal(err.retryable, true);
    assert.match(err.message, /no answer within 100 ms/);
    assert.ok(err.message.includes(r.url), err.message);
    assert.ok(Date.now() - started < 1_500, `took ${Date.now() - started} ms`);
  });

  test('connection refused (receiver closed) is WebhookUnavailable', async () => {
    const r = await startWebhookReceiver();
    await r.close();
    const err = await rejection(deliverWebhook({ url: r.url }, event('d-refused'), { timeoutMs: 2_000 }));
    assert.ok(err instanceof WebhookUnavailable, String(err));
    assert.match(err.message, /ECONNREFUSED/);
    assert.ok(err.message.includes(r.url), err.message);
  });

  test('the same delivery id sent twice is recorded once', async () => {
    const r = await receiver({ secret: 's' });
    await deliverWebhook({ url: r.url, secret: 's' }, event('d-dup'));
    await deliverWebhook({ url: r.url, secret: 's' }, event('d-dup'));
    await deliverWebhook({ url: r.url, secret: 's' }, event('d-other', { epoch: 8 }));
    assert.equal(r.requests, 3);
    assert.equal(r.duplicates, 1);
    assert.deepEqual(
      r.received.map((d) => d.deliveryId),
      ['d-dup', 'd-other'],
    );
  });

  test('a cancelled attempt rethrows the caller’s reason instead of a retryable error', async () => {
    const r = await receiver({ delayMs: 2_000 });
    const controller = new AbortController();
    const reason = new Error('activity cancelled');
    setTimeout(() => controller.abort(reason), 50);
    const err = await rejection(deliverWebhook({ url: r.url }, event('d-cancel'), { signal: controller.signal }));
    assert.equal(err, reason);
  });

  test('refuses a bad target before sending anything', async () => {
    const r = await receiver();
    const withCreds = r.url.replace('http://', 'http://u:p@');
    const err = await rejection(deliverWebhook({ url: withCreds, name: 'ops' }, event('d-bad')));
    assert.ok(err instanceof ConfigProblem, String(err));
    assert.match(err.message, /^webhook "ops"\.url: .*credentials/);
    await rejection(deliverWebhook({ url: r.url, secret: '' }, event('d-bad')));
    await rejection(deliverWebhook({ url: r.url }, event('')));
    assert.equal(r.requests, 0);
  });
});

void describe('deliverWebhook against odd answers', () => {
  let server: Server;
  let base: string;
  before(async () => {
    server = createServer((req, res) => {
      req.resume();
      if (req.url?.startsWith('/redirect')) {
        res.writeHead(308, { location: '/elsewhere?token=abc' }).end();
      } else if (req.url?.startsWith('/long')) {
        res.writeHead(422, { 'content-type': 'text/plain' }).end(`${'x'.repeat(300)}TAIL`);
      } else if (req.url?.startsWith('/busy')) {
        res.writeHead(429, { 'retry-after': '7' }).end('slow down');
      } else {
        res.writeHead(404).end('no such hook');
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  test('a redirect is not followed: WebhookRejected', async () => {
    const err = await rejection(deliverWebhook({ url: `${base}/redirect` }, event()));
    assert.ok(err instanceof WebhookRejected, String(err));
    assert.equal(err.status, 308);
    assert.match(err.message, /redirects are not followed/);
    assert.ok(!err.message.includes('token=abc'), err.message);
  });

  test('the body in the message is cut at 200 characters', async () => {
    const err = await rejection(deliverWebhook({ url: `${base}/long` }, event()));
    assert.ok(err instanceof WebhookRejected, String(err));
    assert.ok(err.message.includes('x'.repeat(200)), err.message);
    assert.ok(!err.message.includes('TAIL'), err.message);
  });

  test('429 carries Retry-After', async () => {
    const err = await rejection(deliverWebhook({ url: `${base}/busy` }, event()));
    assert.ok(err instanceof WebhookUnavailable, String(err));
    assert.equal(err.retryAfterMs, 7_000);
    assert.match(err.message, /HTTP 429: slow down/);
  });

  test('the query string, which may hold a token, stays out of messages', async () => {
    const err = await rejection(deliverWebhook({ url: `${base}/missing?token=s3cr3t` }, event()));
    assert.ok(err instanceof WebhookRejected, String(err));
    assert.ok(err.message.includes(`${base}/missing?…`), err.message);
    assert.ok(!err.message.includes('s3cr3t'), err.message);
    assert.match(err.message, /HTTP 404: no such hook/);
  });
});
