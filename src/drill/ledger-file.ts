/**
 * A drill's ledger on disk: one JSON line per acknowledgement (LedgerAck), appended by the load
 * process as each answer arrives, so the evidence outlives the worker that started the load (and
 * the load process itself, up to its last complete line).
 */
import { closeSync, existsSync, openSync, readFileSync, truncateSync, writeSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { LedgerAck } from './measure';

export interface LedgerWriter {
  append(ack: LedgerAck): void;
  close(): void;
}

/** Opens the ledger for appending; a torn last line (a writer killed mid-line) is cut off first. */
export function openLedger(path: string): LedgerWriter {
  if (existsSync(path)) {
    const text = readFileSync(path);
    const end = text.lastIndexOf(0x0a) + 1;
    if (end < text.length) truncateSync(path, end);
  }
  const fd = openSync(path, 'a', 0o600);
  return {
    // One write per line: a killed process leaves whole lines, at most a torn last one.
    append: (ack) => void writeSync(fd, `${JSON.stringify(ack)}\n`),
    close: () => closeSync(fd),
  };
}

/** Every complete line of the ledger; a torn last line (the writer was killed mid-write) is left out. */
export async function readLedger(path: string): Promise<LedgerAck[]> {
  const text = await readFile(path, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return '';
    throw err;
  });
  // The part after the last newline is '' or a torn line: left out either way.
  const complete = text.split('\n').slice(0, -1);
  return complete.map((line, i) => {
    try {
      return JSON.parse(line) as LedgerAck;
    } catch {
      throw new Error(`${path}: line ${i + 1} is not a ledger entry: ${line.slice(0, 80)}`);
    }
  });
}
