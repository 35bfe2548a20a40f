/** The node token `npm start` makes on its first run and keeps in .data/ for the next ones. */
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';

/** 32 random bytes, base64url: 43 token characters. */
export function newNodeToken(): string {
  return randomBytes(32).toString('base64url');
}

/**
 * Writes a new token to `path` (mode 0600) unless the file exists; says whether it made one. An
 * existing file is kept as it is, so the nodes' data and the operator's copy stay valid.
 */
export async function ensureTokenFile(path: string): Promise<boolean> {
  const text = `# kimiclaw node control token (docs/node-api.md, "Authentication"); one token per line\n${newNodeToken()}\n`;
  try {
    await writeFile(path, text, { mode: 0o600, flag: 'wx' });
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
}
