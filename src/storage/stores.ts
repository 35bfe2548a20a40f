/** Picks the store of a tier: L1 on the node's own disk, L2 and L3 in the S3-compatible bucket. */
import type { Config, DatabaseConfig, NodeConfig } from '../config';
import { nodeBackupDir } from '../config';
import type { Tier } from '../domain';
import { InputProblem } from '../errors';
import { LocalStore } from './local';
import { S3Store, createS3Client } from './s3';
import type { BackupStore } from './store';

export class Stores {
  private s3Store: S3Store | undefined;

  constructor(private readonly config: Config) {}

  s3(): S3Store {
    this.s3Store ??= new S3Store(createS3Client(this.config.storage), this.config.storage);
    return this.s3Store;
  }

  /** A configured database; an unknown name is an input problem naming the configured ones. */
  database(name: string): DatabaseConfig {
    const db = this.config.databases.find((d) => d.name === name);
    if (!db) {
      const known = this.config.databases.map((d) => JSON.stringify(d.name)).join(', ');
      throw new InputProblem('database', `"${name}" is not a configured database; configured: ${known}`);
    }
    return db;
  }

  node(database: string, nodeId: string): NodeConfig {
    const db = this.config.databases.find((d) => d.name === database);
    const node = db?.nodes.find((n) => n.id === nodeId);
    if (!db || !node) {
      throw new InputProblem('node', `node "${nodeId}" of database "${database}" is not configured`);
    }
    return node;
  }

  local(database: string, nodeId: string): LocalStore {
    return new LocalStore(nodeBackupDir(this.node(database, nodeId)));
  }

  /** L1 lives on the node that took it; pass that node for L1. */
  forTier(tier: Tier, database: string, nodeId?: string): BackupStore {
    if (tier !== 'L1') return this.s3();
    if (!nodeId) throw new InputProblem('node', 'an L1 backup lives on a node: name the node');
    return this.local(database, nodeId);
  }

  /**
   * Every store that may hold a database's backups of a tier: the bucket, or for L1 the
   * directory of each of its nodes (only those in `nodes` when given: the ones on this host).
   */
  ofTier(database: string, tier: Tier, nodes?: readonly string[]): BackupStore[] {
    if (tier !== 'L1') return [this.s3()];
    return this.database(database)
      .nodes.filter((n) => !nodes || nodes.includes(n.id))
      .map((n) => this.local(database, n.id));
  }

  destroy(): void {
    this.s3Store?.client.destroy();
  }
}
