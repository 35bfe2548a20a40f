/**
 * A drill's write load, as a process of its own (started by src/drill/load.ts): follows the
 * cluster's primary record, writes small batches with unique sequence numbers, and appends every
 * acknowledgement to the ledger file. SIGTERM stops it after the write in flight. Where the
 * primary record is comes from a spec file ({ configCenter, key }); the node token from the
 * environment (KIMICLAW_NODE_TOKEN): nothing secret is on the command line.
 *
 *   node --import tsx src/drill/load-main.ts --spec FILE --ledger FILE [--batch N] [--pause-ms MS]
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { openConfigCenter } from '../config-center';
import { startClusterWriter } from '../dev/cluster-writer';
import { NodeToken } from '../node-token';
import { openLedger, readLedger } from './ledger-file';
import type { LoadSpec } from './load';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      spec: { type: 'string' },
      ledger: { type: 'string' },
      batch: { type: 'string', default: '5' },
      'pause-ms': { type: 'string', default: '0' },
    },
  });
  if (!values.spec) throw new Error('--spec: the file naming the config center and the primary key is required');
  if (!values.ledger) throw new Error('--ledger: the file to append acknowledgements to is required');
  const spec = JSON.parse(await readFile(values.spec, 'utf8')) as LoadSpec;
  const center = openConfigCenter(spec.configCenter);
  const token = process.env.KIMICLAW_NODE_TOKEN ? new NodeToken(process.env.KIMICLAW_NODE_TOKEN) : undefined;
  // A restarted load continues the ledger with sequence numbers no earlier run can have sent: not
  // only those acknowledged (in the ledger) but also those in flight when it stopped, which a node
  // may hold unacknowledged. Each run starts at its start time in microseconds (below 2^53), and
  // above every number in the ledger should the clock have gone back.
  const earlier = await readLedger(values.ledger);
  const firstSeq = earlier.reduce((max, a) => a.seqs.reduce((m, s) => Math.max(m, s), max), Date.now() * 1_000);
  const ledger = openLedger(values.ledger);
  const writer = startClusterWriter(center, {
    token,
    key: spec.key,
    batch: Number(values.batch),
    pauseMs: Number(values['pause-ms']),
    requestTimeoutMs: 2_000,
    firstSeq,
    onAck: (ack) => ledger.append(ack),
  });
  const stop = async () => {
    await writer.stop();
    ledger.close();
    await center.close();
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop());
  process.once('SIGINT', () => void stop());
  console.log(JSON.stringify({ event: 'load-started', pid: process.pid, key: spec.key, firstSeq }));
}

main().catch((err: unknown) => {
  console.error(`drill load: ${(err as Error).message}`);
  process.exit(1);
});
