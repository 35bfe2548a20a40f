/**
 * A drill's faults are real signals to the node process, sent by the node's host worker through the
 * node's pid file (src/activities/fault.ts): SIGSTOP hangs it, SIGCONT resumes it, SIGKILL ends it;
 * a pid file whose process is gone or is not that node is refused, nothing signalled.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createFaultActivities } from '../src/activities/fault';
import { parseConfig } from '../src/config';
import type { NodeProcess } from '../src/dev/node-process';
import { NODE_PID_FILE } from '../src/node/pid-file';
import { testNode, waitFor } from './harness';

void describe('drill faults: signals to the node process by its pid file', () => {
  let dir: string;
  let node: NodeProcess;
  let faults: ReturnType<typeof createFaultActivities>;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kimiclaw-drill-fault-'));
    node = testNode('n1', dir);
    await node.start();
    const config = parseConfig({
      storage: { bucket: 'drill-bucket' },
      databases: [{ name: 'kimiclaw', nodes: [{ id: 'n1', url: node.url, dataDir: node.dataDir }] }],
    });
    faults = createFaultActivities({ config, node: 'n1' });
  });
  after(async () => {
    await node?.stop('SIGKILL');
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const answers = async () =>
    fetch(`${node.url}/health`, { signal: AbortSignal.timeout(500) }).then(
      (r) => r.ok,
      () => false,
    );

  void test('freeze, thaw, kill; then refused: the process is gone, or the pid is not the node', async () => {
    assert.equal(Number(await readFile(join(node.dataDir, NODE_PID_FILE), 'utf8')), node.pid);
    assert.equal(await answers(), true);
    const frozen = await faults.signalNode({ node: 'n1', signal: 'SIGSTOP' });
    assert.equal(frozen.pid, node.pid);
    assert.equal(await answers(), false, 'a frozen node answers nothing');
    await faults.signalNode({ node: 'n1', signal: 'SIGCONT' });
    await waitFor('the node answering again', answers);
    const pid = node.pid!;
    await faults.signalNode({ node: 'n1', signal: 'SIGKILL' });
    await waitFor('the node process gone', async () => !node.running);
    // The killed node left its pid file: the process is gone, so nothing is signalled.
    await assert.rejects(faults.signalNode({ node: 'n1', signal: 'SIGKILL' }), {
      name: 'InputProblem',
      message: `node: the node process ${pid} recorded in ${join(node.dataDir, NODE_PID_FILE)} is not running`,
    });
    // A number reused by another process (here: this test's own) is not the node.
    await writeFile(join(node.dataDir, NODE_PID_FILE), `${process.pid}\n`);
    await assert.rejects(
      faults.signalNode({ node: 'n1', signal: 'SIGKILL' }),
      /is not the node of .* \(the number was reused\)/,
    );
    await assert.rejects(faults.signalNode({ node: 'n2', signal: 'SIGKILL' }), {
      message: 'node: this is the task queue of node n1, not of n2',
    });
    // Started again, it records its new process id; a clean stop removes the file.
    await node.start();
    assert.equal(Number(await readFile(join(node.dataDir, NODE_PID_FILE), 'utf8')), node.pid);
    await node.stop('SIGTERM');
    await assert.rejects(readFile(join(node.dataDir, NODE_PID_FILE)), { code: 'ENOENT' });
  });
});
