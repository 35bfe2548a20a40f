export * from './backup';
export * from './archive';
export * from './restore';
export * from './restore-test';
export * from './cluster';
export * from './prune';
export * from './region';
export * from './region-failover';
