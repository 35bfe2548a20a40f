/**
 * Bearer tokens of the node API (docs/node-api.md, "Authentication"): what a token looks like, the
 * token file format nodes and DR workers share, and the credential DR holds. A token's value never
 * goes into a message: errors name the file and line, and a NodeToken prints as a placeholder.
 */
import { readFileSync } from 'node:fs';

/** RFC 6750 token characters; 16 or more, so that a guessable word is refused. */
const TOKEN_PATTERN = /^[A-Za-z0-9\-._~+/]{16,512}=*$/;

export const TOKEN_RULE = 'a token is 16-512 characters of A-Z a-z 0-9 - . _ ~ + / (then any "=" padding)';

export function isToken(text: string): boolean {
  return TOKEN_PATTERN.test(text);
}

/**
 * The tokens of a token file: one per line, surrounding spaces ignored, blank lines and lines
 * starting with # skipped. The first is the one a node sends to its replicas.
 */
export function parseTokenFile(text: string, source: string): string[] {
  const tokens: string[] = [];
  for (const [i, line] of text.split(/\r?\n/).entries()) {
    const token = line.trim();
    if (token === '' || token.startsWith('#')) continue;
    if (!isToken(token)) throw new Error(`${source} line ${i + 1} is not a token: ${TOKEN_RULE}`);
    tokens.push(token);
  }
  return tokens;
}

/** Tokens of an environment variable: comma-separated, spaces ignored. */
export function parseTokenList(text: string, source: string): string[] {
  const tokens = text
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t !== '');
  tokens.forEach((token, i) => {
    if (!isToken(token)) throw new Error(`${source}: entry ${i + 1} is not a token: ${TOKEN_RULE}`);
  });
  return tokens;
}

/** Reads a token file; errors say which file and why, never what it holds. */
export function readTokenFile(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new Error(`cannot read token file ${path}: ${code}`);
  }
  const tokens = parseTokenFile(text, `token file ${path}`);
  if (tokens.length === 0) throw new Error(`token file ${path} holds no token (one per line, # starts a comment)`);
  return tokens;
}

const REDACTED = '[node token]';

/**
 * The credential a DR worker or client sends to nodes. It lives in the config object, so it must
 * not print: JSON, string conversion and util.inspect all show a placeholder.
 */
export class NodeToken {
  readonly #value: string;

  constructor(value: string) {
    if (!isToken(value)) throw new Error(`not a node token: ${TOKEN_RULE}`);
    this.#value = value;
  }

  /** The value of the Authorization header. */
  authorization(): string {
    return `Bearer ${this.#value}`;
  }

  toJSON(): string {
    return REDACTED;
  }

  toString(): string {
    return REDACTED;
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return REDACTED;
  }
}
