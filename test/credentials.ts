/**
 * The node tokens of a test run and where its processes log. `scripts/run.mjs test` makes both
 * tokens per run and a log directory, and after the run fails it if either token appears in any
 * log there; run directly (node --test), each test process makes its own tokens.
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { NodeToken } from '../src/node-token';

const newToken = (): string => randomBytes(32).toString('base64url');

/** Control token: every route; what the DR worker, the CLI and the tests' own calls send. */
export const NODE_TOKEN = process.env.KIMICLAW_TEST_NODE_TOKEN || newToken();
/** Events token: the event API only; what the tests' writers send. */
export const EVENTS_TOKEN = process.env.KIMICLAW_TEST_EVENTS_TOKEN || newToken();

export const NODE_CREDENTIAL = new NodeToken(NODE_TOKEN);
export const EVENTS_CREDENTIAL = new NodeToken(EVENTS_TOKEN);

/** Headers of a direct call to a node with the control token. */
export const AUTH = { authorization: NODE_CREDENTIAL.authorization() };

/** The environment a test node reads its tokens from. */
export const NODE_TOKEN_ENV = { KIMICLAW_NODE_TOKENS: NODE_TOKEN, KIMICLAW_EVENTS_TOKENS: EVENTS_TOKEN };

/** Where the run's logs go (scripts/run.mjs greps them); undefined when run directly. */
export const LOG_DIR = process.env.KIMICLAW_TEST_LOG_DIR || undefined;

let logs = 0;
/** A new log file in `dir` (default LOG_DIR), named after its process and this test process. */
export function logFile(name: string, dir = LOG_DIR): string | undefined {
  if (!dir) return undefined;
  mkdirSync(dir, { recursive: true });
  return join(dir, `${name}-${process.pid}-${++logs}.log`);
}

/** Appends what a child process prints to a log file (when there is one). */
export function teeToLog(streams: Array<Readable | null | undefined>, name: string, dir = LOG_DIR): void {
  const file = logFile(name, dir);
  if (!file) return;
  const log = createWriteStream(file, { flags: 'a' });
  let open = streams.filter(Boolean).length;
  for (const stream of streams) {
    stream?.pipe(log, { end: false });
    stream?.once('end', () => {
      if (--open === 0) log.end();
    });
  }
}
