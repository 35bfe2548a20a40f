/**
 * Picks the store of a tier: L1 on the node's own disk, L2 and L3 in the S3-compatible bucket.
 * A node's disk is reachable only on its host: asking for the L1 directory (or the data directory)
 * of a node this worker does not own throws, naming the task queue where that work belongs. A
 * missing directory must never pass for an empty catalog.
 */
import type { Config, DatabaseConfig, NodeConfig } from '../config';
import { nodeBackupDir, nodeTaskQueue } from '../config';
import type { Tier } from '../domain';
import { InputProblem, NotOnThisHost } from '../errors';
import { LocalStore } from './local';
import { S3Store, createS3Client } from './s3';
import type { BackupStore } from './store';

export interface StoresOptions {
  /** Nodes whose disks are on this host; default: every configured node (the single-host setup). */
  localNodes?: readonly string[];
}

export class Stores {
  private readonly localNodes: ReadonlySet<string>;

  constructor(
    private readonly config: Config,
    options: StoresOptions = {},
    /** Shared by restricted views, so one worker keeps one S3 client. */
    private readonly shared: { s3?: S3Store } = {},
  ) {
    this.localNodes = new Set(options.localNodes ?? config.databases.flatMap((db) => db.nodes.map((n) => n.id)));
  }

  /**
   * The same stores reaching only some of this host's nodes: the control activities get none, the
   * activities of a node's queue get that node alone.
   */
  restrictedTo(nodes: readonly string[]): Stores {
    return new Stores(this.config, { localNodes: nodes.filter((n) => this.localNodes.has(n)) }, this.shared);
  }

  s3(): S3Store {
    this.shared.s3 ??= new S3Store(createS3Client(this.config.storage), this.config.storage);
    return this.shared.s3;
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

  /** A node's configuration (its URL, where its files are): readable anywhere. */
  node(database: string, nodeId: string): NodeConfig {
    const db = this.config.databases.find((d) => d.name === database);
    const node = db?.nodes.find((n) => n.id === nodeId);
    if (!db || !node) {
      throw new InputProblem('node', `node "${nodeId}" of database "${database}" is not configured`);
    }
    return node;
  }

  isLocal(nodeId: string): boolean {
    return this.localNodes.has(nodeId);
  }

  /** A node whose data directory this worker may open; any other node throws NotOnThisHost. */
  localNode(database: string, nodeId: string): NodeConfig {
    const node = this.node(database, nodeId);
    this.ensureLocal(node, 'data directory', node.dataDir);
    return node;
  }

  /** The L1 directory of a node on this host; any other node throws NotOnThisHost. */
  local(database: string, nodeId: string): LocalStore {
    const node = this.node(database, nodeId);
    const dir = nodeBackupDir(node);
    this.ensureLocal(node, 'L1 directory', dir);
    return new LocalStore(dir);
  }

  private ensureLocal(node: NodeConfig, what: string, path: string): void {
    if (this.localNodes.has(node.id)) return;
    const here = [...this.localNodes].join(', ') || 'none';
    throw new NotOnThisHost(
      `the ${what} of node ${node.id} (${path}) is not reachable here (node directories reachable here: ${here}); ` +
        `that work belongs on task queue "${nodeTaskQueue(this.config, node)}"`,
    );
  }

  /** L1 lives on the node that took it; pass that node for L1. */
  forTier(tier: Tier, database: string, nodeId?: string): BackupStore {
    if (tier !== 'L1') return this.s3();
    if (!nodeId) throw new InputProblem('node', 'an L1 backup lives on a node: name the node');
    return this.local(database, nodeId);
  }

  /** The nodes of a database whose disks are on this host (the rest is read on their hosts). */
  localNodesOf(database: string): NodeConfig[] {
    return this.database(database).nodes.filter((n) => this.localNodes.has(n.id));
  }

  destroy(): void {
    this.shared.s3?.client.destroy();
  }
}
