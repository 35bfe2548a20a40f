/**
 * Runs one kimiclaw node as a process:
 *   npx tsx src/node/main.ts --id node1 --data-dir DIR [--port 0] [--host 127.0.0.1] [--database kimiclaw]
 *     [--role primary|replica] [--replica node2=http://127.0.0.1:7002[,sync|async]]... [--sync-timeout-ms 30000]
 *     [--bootstrap-lag-lsn 100000] [--init primary|replica] [--scrub-interval 60s] [--scrub-budget-mibps 64]
 *     [--min-free-bytes N] [--aside-retention 7d] [--reopen-interval 2s]
 *     [--leader-etcd http://e1:2379,http://e2:2379,http://e3:2379 [--leader-ttl 10s] [--leader-key KEY]]
 *     (--token-file FILE [--events-token-file FILE] | --insecure-no-auth)
 * Tokens come from files or KIMICLAW_NODE_TOKENS / KIMICLAW_EVENTS_TOKENS, never argv; without one
 * the node refuses to start (src/node/auth-sources.ts). Prints exactly one line to stdout once
 * listening, {"event":"listening","url":...,"id":...}, so a parent can read the URL; everything
 * else is JSON lines on stderr. SIGTERM/SIGINT stop it cleanly (in-flight writes finish,
 * checkpoint, exit 0); SIGHUP reads the token files again.
 */
import { renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { parseDuration } from '../duration';
import { NodeAuth } from './auth';
import { type AuthSources, loadAuthSetup, reloadTokens } from './auth-sources';
import { errorMessage, jsonLogger } from './log';
import { NODE_PID_FILE } from './pid-file';
import { startNode } from './server';

const USAGE =
  'usage: main.ts --id <name> --data-dir <dir> [--port 0] [--host 127.0.0.1] [--database kimiclaw] [--drain-timeout-ms 30000]\n' +
  '               [--role primary|replica] [--replica <id>=<url>[,sync|async]]... [--sync-timeout-ms 30000]\n' +
  '               [--bootstrap-lag-lsn 100000] [--init primary|replica]\n' +
  '               [--scrub-interval 60s|0] [--scrub-budget-mibps 64] [--min-free-bytes N] [--aside-retention 7d]\n' +
  '               [--reopen-interval 2s] [--leader-etcd <url>,<url>,... [--leader-ttl 10s] [--leader-key <key>]]\n' +
  '               (--token-file <file> [--events-token-file <file>] | --insecure-no-auth)\n' +
  '  tokens: one per line in the files, or KIMICLAW_NODE_TOKENS / KIMICLAW_EVENTS_TOKENS (comma-separated)';

/** --replica node2=http://127.0.0.1:7002,sync → { id, url, mode } (sync by default). */
function parseReplica(text: string): { id: string; url: string; mode: 'sync' | 'async' } {
  const match = /^([^=]+)=([^,]+)(?:,(sync|async))?$/.exec(text);
  if (!match) throw new Error(`--replica ${text}: expected <id>=<url>[,sync|async]\n${USAGE}`);
  return { id: match[1]!, url: match[2]!, mode: (match[3] as 'sync' | 'async' | undefined) ?? 'sync' };
}

/** A duration flag: "90s", "7d", … or 0. */
function durationFlag(name: string, text: string): number {
  const ms = text.trim() === '0' ? 0 : parseDuration(text);
  if (ms === undefined || ms < 0)
    throw new Error(`--${name} ${text}: expected a duration such as 60s, 15m, 7d (or 0)\n${USAGE}`);
  return ms;
}

/** A non-negative number flag. */
function numberFlag(name: string, text: string): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value < 0)
    throw new Error(`--${name} ${text}: expected a non-negative number\n${USAGE}`);
  return value;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      id: { type: 'string' },
      'data-dir': { type: 'string' },
      port: { type: 'string', default: '0' },
      host: { type: 'string', default: '127.0.0.1' },
      database: { type: 'string', default: 'kimiclaw' },
      'drain-timeout-ms': { type: 'string', default: '30000' },
      role: { type: 'string', default: 'primary' },
      replica: { type: 'string', multiple: true, default: [] },
      'sync-timeout-ms': { type: 'string', default: '30000' },
      'bootstrap-lag-lsn': { type: 'string', default: '100000' },
      init: { type: 'string' },
      'scrub-interval': { type: 'string', default: '60s' },
      'scrub-budget-mibps': { type: 'string', default: '64' },
      'min-free-bytes': { type: 'string' },
      'aside-retention': { type: 'string', default: '7d' },
      'reopen-interval': { type: 'string', default: '2s' },
      'leader-etcd': { type: 'string' },
      'leader-ttl': { type: 'string', default: '10s' },
      'leader-key': { type: 'string' },
      'token-file': { type: 'string' },
      'events-token-file': { type: 'string' },
      'insecure-no-auth': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (!values.id || !values['data-dir']) throw new Error(`--id and --data-dir are required\n${USAGE}`);
  const init = values.init;
  if (init !== undefined && init !== 'primary' && init !== 'replica') {
    throw new Error(`--init ${init}: expected primary or replica\n${USAGE}`);
  }
  const port = Number(values.port);
  const drainTimeoutMs = Number(values['drain-timeout-ms']);
  const log = jsonLogger({ node: values.id });
  const sources: AuthSources = {
    tokenFile: values['token-file'],
    eventsTokenFile: values['events-token-file'],
    insecure: values['insecure-no-auth'],
    env: process.env,
  };
  const setup = loadAuthSetup(sources);
  const auth = setup.mode === 'none' ? NodeAuth.open() : NodeAuth.bearer(setup.tokens);
  const node = await startNode({
    id: values.id,
    dataDir: values['data-dir'],
    database: values.database,
    port,
    host: values.host,
    drainTimeoutMs,
    role: values.role as 'primary' | 'replica',
    replicas: values.replica.map(parseReplica),
    syncTimeoutMs: Number(values['sync-timeout-ms']),
    bootstrapLagLsn: Number(values['bootstrap-lag-lsn']),
    init,
    scrubIntervalMs: durationFlag('scrub-interval', values['scrub-interval']),
    scrubBudgetBytesPerSecond: Math.round(numberFlag('scrub-budget-mibps', values['scrub-budget-mibps']) * 1024 * 1024),
    ...(values['min-free-bytes'] === undefined
      ? {}
      : { minFreeBytes: Math.round(numberFlag('min-free-bytes', values['min-free-bytes'])) }),
    asideRetentionMs: durationFlag('aside-retention', values['aside-retention']),
    reopenIntervalMs: durationFlag('reopen-interval', values['reopen-interval']),
    ...(values['leader-etcd']
      ? {
          leaderLease: {
            endpoints: values['leader-etcd'].split(',').map((e) => e.trim()),
            ttlMs: durationFlag('leader-ttl', values['leader-ttl']),
            ...(values['leader-key'] ? { key: values['leader-key'] } : {}),
          },
        }
      : {}),
    auth,
    log,
  });
  // The process id beside the data, for the host's worker (a drill's fault is a real signal to
  // this process); removed on a clean stop, left by a killed process (the next start overwrites it).
  // Written before the listening line, so a parent that saw the line finds it, and through a
  // rename, so a reader never sees a half-written file.
  const pidFile = join(values['data-dir'], NODE_PID_FILE);
  try {
    writeFileSync(`${pidFile}.tmp`, `${process.pid}\n`);
    renameSync(`${pidFile}.tmp`, pidFile);
  } catch (err) {
    // A full or read-only disk must not keep the node from starting (it reports itself unwritable).
    log('pid_file_failed', { path: pidFile, error: errorMessage(err) });
  }
  process.once('exit', () => {
    try {
      unlinkSync(pidFile);
    } catch {
      // already gone
    }
  });

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (++signals > 1) {
      log('forced_exit', { signal });
      process.exit(1);
    }
    log('stopping', { signal });
    node.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log('stop_failed', { error: errorMessage(err) });
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // Rotation: add the new token to the files, SIGHUP, move clients over, remove the old, SIGHUP.
  process.on('SIGHUP', () => {
    try {
      auth.replace(reloadTokens(sources));
      log('auth_reloaded', { tokens: auth.counts });
    } catch (err) {
      log('auth_reload_failed', { error: errorMessage(err), kept: auth.counts });
    }
  });
  // Last: a parent that saw this line may signal the node at once, and finds the handlers set.
  process.stdout.write(`${JSON.stringify({ event: 'listening', url: node.url, id: node.id })}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(
    `${JSON.stringify({ time: new Date().toISOString(), event: 'start_failed', error: errorMessage(err) })}\n`,
  );
  process.exit(1);
});
