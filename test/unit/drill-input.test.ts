/**
 * The drill's input and the checks that refuse a drill before any fault is injected: each names
 * the field and the accepted values (src/drill/input.ts).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigError, parseConfig } from '../../src/config';
import {
  DRILL_SCENARIOS,
  DrillInputSchema,
  PLAN_OBJECTIVES,
  describeObjective,
  planDrill,
} from '../../src/drill/input';
import { drillTopology } from '../../src/drill/topology';
import { InputProblem } from '../../src/errors';

let port = 7000;
function node(id: string, extra: Record<string, unknown> = {}) {
  return { id, url: `http://127.0.0.1:${++port}`, dataDir: `/var/lib/${id}`, ...extra };
}
function config(extra: Record<string, unknown> = {}, nodes = [node('a1', { zone: 'a' }), node('b1', { zone: 'b' })]) {
  return parseConfig({ storage: { bucket: 'drill-bucket' }, databases: [{ name: 'kimiclaw', nodes }], ...extra });
}
/** The messages of the zod issues, each with its path. */
function inputProblem(input: unknown): string {
  const parsed = DrillInputSchema.safeParse(input);
  assert.equal(parsed.success, false, 'the input was accepted');
  return parsed.error!.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
}
function refusal(fn: () => unknown): InputProblem {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof InputProblem, `expected InputProblem, got ${String(err)}`);
    return err;
  }
  assert.fail('the drill was not refused');
}
const plan = (input: unknown, cfg = config()) => planDrill(DrillInputSchema.parse(input), drillTopology(cfg));

void describe('drill input', () => {
  void test('an unknown scenario is refused with the accepted ones', () => {
    assert.match(
      inputProblem({ scenarios: ['meteor'] }),
      /^scenarios\.0: "meteor" is not a scenario \(accepted: single-node, damaged-file, bad-writes, zone-failure, region-failure, orchestrator-down\)$/,
    );
    assert.match(inputProblem({ target: 'staging' }), /^target: must be one of: isolated, production$/);
    assert.match(inputProblem({ scenarios: [] }), /^scenarios: name at least one scenario/);
    assert.match(inputProblem({ scenario: 'single-node' }), /scenario/);
  });

  void test('objectives must be durations: RTO above zero, RPO zero or more', () => {
    assert.match(
      inputProblem({ objectives: { 'single-node': { rto: 'fast' } } }),
      /^objectives\.single-node\.rto: "fast" is not a duration; write a number and a unit/,
    );
    assert.match(
      inputProblem({ objectives: { 'single-node': { rto: '0s' } } }),
      /^objectives\.single-node\.rto: "0s" must be greater than zero$/,
    );
    assert.match(
      inputProblem({ objectives: { 'single-node': { rpo: '-1s' } } }),
      /^objectives\.single-node\.rpo: "-1s" must be zero or more$/,
    );
    assert.match(inputProblem({ objectives: { meteor: { rto: '1s' } } }), /"meteor" is not a scenario/);
    assert.match(
      inputProblem({ objectives: { 'single-node': { rto: '1s', within: '2s' } } }),
      /objectives\.single-node/,
    );
    const p = plan({ scenarios: ['single-node'], objectives: { 'single-node': { rto: '1ms', rpo: '0' } } });
    assert.deepEqual(p.objectives['single-node'], { rtoMs: 1, rpoMs: 0 });
    assert.equal(describeObjective(p.objectives['single-node']), 'RTO 1ms, RPO 0');
  });

  void test('left out: every scenario the topology supports, at the plan objectives, on the private stack', () => {
    const p = plan({});
    assert.equal(p.target, 'isolated');
    assert.deepEqual(
      p.scenarios,
      DRILL_SCENARIOS.filter((s) => s !== 'region-failure'),
    );
    assert.deepEqual(p.objectives, PLAN_OBJECTIVES);
    assert.equal(p.awaitsConfirmation, false);
    const oneZone = config({}, [node('a1'), node('a2')]);
    assert.ok(!plan({}, oneZone).scenarios.includes('zone-failure'));
  });

  void test('a zone scenario on a cluster in one zone, a region scenario without a standby region: refused', () => {
    const noZones = refusal(() => plan({ scenarios: ['zone-failure'] }, config({}, [node('a1'), node('a2')])));
    assert.equal(noZones.field, 'scenarios');
    assert.equal(
      noZones.message,
      'scenarios: zone-failure needs nodes in two zones; the nodes of kimiclaw have no zone',
    );
    const oneZone = refusal(() =>
      plan({ scenarios: ['zone-failure'] }, config({}, [node('a1', { zone: 'a' }), node('a2', { zone: 'a' })])),
    );
    assert.match(oneZone.message, /every node of kimiclaw is in zone a/);
    const region = refusal(() => plan({ scenarios: ['single-node', 'region-failure'] }));
    assert.equal(region.message, 'scenarios: region-failure needs a standby region (declare one under "regions")');
  });

  void test('production: only the scenarios the config allows, and a confirmation', () => {
    const p = plan({ target: 'production' });
    assert.deepEqual(p.scenarios, ['single-node', 'damaged-file']);
    assert.equal(p.awaitsConfirmation, true);
    assert.equal(plan({ target: 'production', confirmed: true }).awaitsConfirmation, false);
    const zone = refusal(() => plan({ target: 'production', scenarios: ['zone-failure'] }));
    assert.equal(
      zone.message,
      'scenarios: zone-failure is not allowed on production (allowed: single-node, damaged-file; drills.production.scenarios in the config); run it with target "isolated"',
    );
    const none = config({ drills: { production: { scenarios: [] } } });
    assert.match(refusal(() => plan({ target: 'production' }, none)).message, /no scenario is allowed/);
    const more = config({ drills: { production: { scenarios: ['single-node', 'bad-writes'] } } });
    assert.deepEqual(plan({ target: 'production' }, more).scenarios, ['single-node', 'bad-writes']);
  });

  void test("orchestrator-down stops the drill stack's own Temporal: isolated only, unless on a private stack", () => {
    assert.ok(plan({ scenarios: ['orchestrator-down'] }).scenarios.includes('orchestrator-down'));
    const allowed = config({ drills: { production: { scenarios: ['single-node', 'orchestrator-down'] } } });
    const refused = refusal(() => plan({ target: 'production', scenarios: ['orchestrator-down'] }, allowed));
    assert.equal(
      refused.message,
      'scenarios: orchestrator-down stops the drill\'s own Temporal server and worker: it runs on a private stack (target "isolated") only',
    );
    // Left out on production, it is not planned there (not even when the config allows it).
    assert.deepEqual(plan({ target: 'production' }, allowed).scenarios, ['single-node']);
    // The worker of a private stack is told so: there the copy's "production" drill may run it.
    const onStack = { ...drillTopology(allowed), privateStack: true };
    const parsed = DrillInputSchema.parse({ target: 'production', scenarios: ['orchestrator-down'] });
    assert.deepEqual(planDrill(parsed, onStack).scenarios, ['orchestrator-down']);
  });

  void test('zone-failure kills a whole zone: isolated only, unless on a private stack', () => {
    const zoned = config({ drills: { production: { scenarios: ['single-node', 'zone-failure'] } } }, [
      node('a1', { zone: 'a' }),
      node('b1', { zone: 'b' }),
    ]);
    assert.deepEqual(plan({ scenarios: ['zone-failure'] }, zoned).scenarios, ['zone-failure']);
    const refused = refusal(() => plan({ target: 'production', scenarios: ['zone-failure'] }, zoned));
    assert.equal(
      refused.message,
      'scenarios: zone-failure kills every process of a zone (its nodes, its etcd member, its worker): it runs on a private stack (target "isolated") only',
    );
    assert.deepEqual(plan({ target: 'production' }, zoned).scenarios, ['single-node']);
    const onStack = { ...drillTopology(zoned), privateStack: true };
    const parsed = DrillInputSchema.parse({ target: 'production', scenarios: ['zone-failure'] });
    assert.deepEqual(planDrill(parsed, onStack).scenarios, ['zone-failure']);
  });

  void test('region-failure stops a whole region: with a standby region, isolated only, unless on a private stack', () => {
    const regional = config(
      {
        regions: { primary: 'a', standby: [{ name: 'b', storage: { bucket: 'drill-bucket-b' } }] },
        drills: { production: { scenarios: ['single-node', 'region-failure'] } },
      },
      [
        node('a1', { zone: 'a', region: 'a' }),
        node('a2', { zone: 'b', region: 'a' }),
        node('b1', { zone: 'c', region: 'b' }),
      ],
    );
    assert.deepEqual(plan({ scenarios: ['region-failure'] }, regional).scenarios, ['region-failure']);
    // Left out on the isolated target, it is planned when a standby region is declared.
    assert.ok(plan({}, regional).scenarios.includes('region-failure'));
    const refused = refusal(() => plan({ target: 'production', scenarios: ['region-failure'] }, regional));
    assert.equal(refused.field, 'scenarios');
    assert.equal(
      refused.message,
      'scenarios: region-failure stops every process of a region (its nodes, etcd members, workers, object store and Temporal server): it runs on a private stack (target "isolated") only',
    );
    assert.deepEqual(plan({ target: 'production' }, regional).scenarios, ['single-node']);
    const onStack = { ...drillTopology(regional), privateStack: true };
    const parsed = DrillInputSchema.parse({ target: 'production', scenarios: ['region-failure'] });
    assert.deepEqual(planDrill(parsed, onStack).scenarios, ['region-failure']);
  });

  void test('objectives for a scenario the drill does not run are refused', () => {
    const r = refusal(() => plan({ scenarios: ['single-node'], objectives: { 'damaged-file': { rto: '1m' } } }));
    assert.equal(r.field, 'objectives.damaged-file');
  });

  void test('the config sets objectives and production scenarios, checked like the input', () => {
    const c = config({ drills: { objectives: { 'zone-failure': { rto: '5s', rpo: '0' } } } });
    assert.deepEqual(c.drills.objectives['zone-failure'], { rtoMs: 5_000, rpoMs: 0 });
    assert.deepEqual(c.drills.objectives['single-node'], PLAN_OBJECTIVES['single-node']);
    assert.throws(
      () => config({ drills: { production: { scenarios: ['meteor'] } } }),
      (err: unknown) =>
        err instanceof ConfigError &&
        err.problems.some((p) => p.startsWith('drills.production.scenarios.0: must be one of: single-node')),
    );
    assert.throws(
      () => config({ drills: { objectives: { 'single-node': { rto: 'soon' } } } }),
      (err: unknown) =>
        err instanceof ConfigError && err.problems.some((p) => p.includes('drills.objectives.single-node.rto')),
    );
  });
});
