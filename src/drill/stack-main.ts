/**
 * A drill's private stack as a process of its own (started by the drill's activities through
 * detached.ts): a worker killed mid-drill leaves the stack running for the drill to go on with, or
 * to tear down. Prints {"event":"stack-ready", ...StackInfo} once the stack is steady; SIGTERM
 * stops every process of the stack and removes its directory.
 *
 *   node --import tsx src/drill/stack-main.ts --spec FILE
 */
import { readFile, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import {
  type RunningStack,
  type StackFaultRequest,
  type StackSpec,
  faultRequestFile,
  faultResultFile,
  startStack,
} from './stack';

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { spec: { type: 'string' } } });
  if (!values.spec) throw new Error('--spec: the file describing the stack is required');
  const spec = JSON.parse(await readFile(values.spec, 'utf8')) as StackSpec;
  const say = (line: string) => process.stderr.write(`${new Date().toISOString()} ${line}\n`);
  let stopping = false;
  const running: { stack?: RunningStack } = {};
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    // Still starting: the start finishes, then stops what it started (below).
    if (!running.stack) return;
    say('stopping the private stack');
    await running.stack.stop();
    process.exit(0);
  };
  // `on`, not `once`: while a handler of ours listens, the servers' own handler (src/dev/servers.ts)
  // leaves the stopping to us instead of killing its children at once and the nodes not at all.
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
  const stack = await startStack(spec, say);
  running.stack = stack;
  if (stopping) {
    await stack.stop();
    process.exit(0);
  }
  // Faults only this process can inject (orchestrator-down, zone-failure): the stack's worker
  // writes a request and sends SIGUSR2. One at a time, each id once.
  const done = new Set<string>();
  let faults = Promise.resolve();
  process.on('SIGUSR2', () => {
    if (stopping) return;
    faults = faults
      .then(async () => {
        const request = JSON.parse(await readFile(faultRequestFile(spec.dir), 'utf8')) as StackFaultRequest;
        if (done.has(request.id) || stopping) return;
        done.add(request.id);
        await stack.fault(request, (fault) => writeFile(faultResultFile(spec.dir, request.id), JSON.stringify(fault)));
      })
      .catch((err: unknown) => void say(`fault: ${(err as Error).message}`));
  });
  console.log(JSON.stringify({ event: 'stack-ready', ...stack.info }));
}

main().catch((err: unknown) => {
  process.stderr.write(`drill stack: ${(err as Error).message}\n`);
  process.exit(1);
});
