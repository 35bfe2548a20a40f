/**
 * A drill's write load, as a process of its own (started by src/drill/load.ts): follows the
 * cluster's primary record, writes small batches with unique sequence numbers, and appends every
 * acknowledgement to the ledger file. SIGTERM stops it after the write in flight. The DR config
 * comes from DR_CONFIG (its node token is used for the writes); nothing secret is on the command
 * line.
 *
 *   node --import tsx src/drill/load-main.ts --ledger FILE [--cluster NAME] [--batch N] [--pause-ms MS]
 */
import { parseArgs } from 'node:util';
import { primaryKey } from '../activities/cluster';
import { clusterOfConfig } from '../cluster';
import { loadConfig } from '../config';
import { openConfigCenter } from '../config-center';
import { startClusterWriter } from '../dev/cluster-writer';
import { openLedger, readLedger } from './ledger-file';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      ledger: { type: 'string' },
      cluster: { type: 'string' },
      batch: { type: 'string', default: '5' },
      'pause-ms': { type: 'string', default: '0' },
    },
  });
  if (!values.ledger) throw new Error('--ledger: the file to append acknowledgements to is required');
  const config = loadConfig();
  const cluster = clusterOfConfig(config, values.cluster).name;
  const center = openConfigCenter(config.cluster.configCenter);
  // A restarted load continues the ledger with sequence numbers no earlier run can have sent: not
  // only those acknowledged (in the ledger) but also those in flight when it stopped, which a node
  // may hold unacknowledged. Each run starts at its start time in microseconds (below 2^53), and
  // above every number in the ledger should the clock have gone back.
  const earlier = await readLedger(values.ledger);
  const firstSeq = earlier.reduce((max, a) => a.seqs.reduce((m, s) => Math.max(m, s), max), Date.now() * 1_000);
  const ledger = openLedger(values.ledger);
  const writer = startClusterWriter(center, {
    token: config.nodeAuth.token,
    key: primaryKey(cluster),
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
  console.log(JSON.stringify({ event: 'load-started', pid: process.pid, cluster, firstSeq }));
}

main().catch((err: unknown) => {
  console.error(`drill load: ${(err as Error).message}`);
  process.exit(1);
});
