/**
 * How the nodes of a local cluster (`npm start`, a drill's private stack) are told who they are:
 * the first starts as primary, the others as replicas, and each names every other node with the
 * mode it gets when this one is primary (a restart keeps the roles stored in the files).
 */
export function replicationArgs(
  layout: ReadonlyArray<{ id: string; url: string; zone?: string; region?: string }>,
  i: number,
): string[] {
  const zoneOf = (k: number) => layout[k]!.zone;
  // Its synchronous replica when it is primary: the first node of another zone (any other node
  // without zones) in its own region (a node of another region is never synchronous); the monitor
  // moves the role to another zone than the primary's.
  const sync = layout.findIndex(
    (other, j) =>
      j !== i &&
      (other.region === undefined || other.region === layout[i]!.region) &&
      (zoneOf(j) === undefined || zoneOf(j) !== zoneOf(i)),
  );
  return [
    '--role',
    i === 0 ? 'primary' : 'replica',
    ...layout.flatMap((other, j) =>
      j === i ? [] : ['--replica', `${other.id}=${other.url},${j === sync ? 'sync' : 'async'}`],
    ),
  ];
}
