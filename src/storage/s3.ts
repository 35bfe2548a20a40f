/**
 * The off-site store (L2, L3): any S3-compatible endpoint. Uploads stream through multipart
 * upload, so no artifact is held in memory; errors are classified so that a missing bucket or
 * refused credentials fail at once while an unreachable endpoint is retried.
 */
import type { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  GetObjectLockConfigurationCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectVersionsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  PutObjectRetentionCommand,
  RestoreObjectCommand,
  S3Client,
  S3ServiceException,
  type StorageClass,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { Config } from '../config';
import { ConfigProblem, Unavailable, networkErrorCode } from '../errors';
import type { BackupStore, PutArtifactOptions, StoredObject } from './store';

export type StorageConfig = Config['storage'];

/** Establishing a connection to the store; a live one answers in milliseconds. */
const CONNECT_TIMEOUT_MS = 5_000;

export function createS3Client(storage: StorageConfig): S3Client {
  const client = new S3Client({
    region: storage.region,
    endpoint: storage.endpoint,
    forcePathStyle: storage.forcePathStyle,
    credentials:
      storage.accessKeyId && storage.secretAccessKey
        ? { accessKeyId: storage.accessKeyId, secretAccessKey: storage.secretAccessKey }
        : undefined,
    // S3-compatible servers differ in which flexible checksums they accept; our own SHA-256
    // over the artifact is the integrity check that matters.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: 3,
    requestHandler: { connectionTimeout: CONNECT_TIMEOUT_MS, socketTimeout: storage.idleTimeout },
  });
  if (payloadNeedsNoSignature(storage.endpoint)) {
    // SigV4 otherwise hashes every uploaded part (~1 s of CPU per GiB). Over TLS, or on
    // loopback, the transport already protects the bytes; the artifact's own SHA-256 in the
    // manifest is checked on every download.
    client.middlewareStack.add(
      (next) => async (args) => {
        const request = args.request as { headers?: Record<string, string> };
        if (request.headers) request.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
        return next(args);
      },
      { step: 'build', name: 'kimiclawUnsignedPayload' },
    );
  }
  return client;
}

/** True for AWS (HTTPS), any https endpoint, and loopback; false for plain HTTP over a network. */
export function payloadNeedsNoSignature(endpoint: string | undefined): boolean {
  if (!endpoint) return true;
  const url = new URL(endpoint);
  return url.protocol === 'https:' || ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
}

export class S3Store implements BackupStore {
  readonly location: string;
  private readonly endpointName: string;

  constructor(
    readonly client: S3Client,
    private readonly storage: StorageConfig,
  ) {
    this.location = `s3://${storage.bucket}/${storage.prefix}`;
    this.endpointName = storage.endpoint ?? `AWS S3 (${storage.region})`;
  }

  locate(key: string): string {
    return `s3://${this.storage.bucket}/${this.fullKey(key)}`;
  }

  private fullKey(key: string): string {
    return `${this.storage.prefix}/${key}`;
  }

  private relativeKey(fullKey: string): string {
    return fullKey.slice(this.storage.prefix.length + 1);
  }

  /** Turns an SDK error into one that says what is wrong and whether retrying helps. */
  explain(err: unknown, doing: string): Error {
    const network = networkErrorCode(err);
    if (network === 'TimeoutError') {
      return new Unavailable(
        `waiting for S3 endpoint ${this.endpointName} (${doing}): nothing received within ${this.storage.idleTimeout / 1000} s (storage.idleTimeout)`,
        { cause: err },
      );
    }
    if (network) {
      return new Unavailable(`waiting for S3 endpoint ${this.endpointName} to answer (${doing}): ${network}`, {
        cause: err,
      });
    }
    if (err instanceof S3ServiceException) {
      const status = err.$metadata.httpStatusCode;
      if (err.name === 'NoSuchBucket' || (status === 404 && doing.startsWith('check bucket'))) {
        return new ConfigProblem(
          'storage.bucket',
          `bucket "${this.storage.bucket}" does not exist at ${this.endpointName}; create it or set storage.bucket (env S3_BUCKET) to an existing bucket`,
        );
      }
      const reason = ['Unknown', 'Forbidden', 'NotFound'].includes(err.name) ? `HTTP ${status}` : err.name;
      if (
        status === 403 ||
        ['InvalidAccessKeyId', 'SignatureDoesNotMatch', 'AccessDenied', 'InvalidSecurity'].includes(err.name)
      ) {
        return new ConfigProblem(
          'storage.accessKeyId',
          `${this.endpointName} refused the credentials for bucket "${this.storage.bucket}" (${reason}); check storage.accessKeyId and storage.secretAccessKey (env AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)`,
        );
      }
      if (status !== undefined && status >= 500) {
        return new Unavailable(`waiting for S3 endpoint ${this.endpointName} (${doing}): ${reason} (HTTP ${status})`, {
          cause: err,
        });
      }
      return new Error(`S3 ${doing} failed: ${reason}: ${err.message}`, { cause: err });
    }
    return err instanceof Error ? err : new Error(String(err));
  }

  /** Fails fast and clearly when the bucket is missing or the credentials are refused. */
  async checkBucket(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.storage.bucket }));
    } catch (err) {
      throw this.explain(err, `check bucket ${this.storage.bucket}`);
    }
  }

  async objectLockEnabled(): Promise<boolean> {
    try {
      const out = await this.client.send(new GetObjectLockConfigurationCommand({ Bucket: this.storage.bucket }));
      return out.ObjectLockConfiguration?.ObjectLockEnabled === 'Enabled';
    } catch (err) {
      const explained = this.explain(err, 'read the Object Lock configuration');
      if (explained instanceof Unavailable) throw explained;
      // Not configured, or not implemented by this S3-compatible server.
      return false;
    }
  }

  async putArtifact(key: string, body: Readable, options: PutArtifactOptions = {}): Promise<void> {
    const upload = new Upload({
      client: this.client,
      partSize: this.storage.partSizeMiB * 1024 * 1024,
      queueSize: this.storage.uploadConcurrency,
      leavePartsOnError: false,
      params: {
        Bucket: this.storage.bucket,
        Key: this.fullKey(key),
        Body: body,
        ContentType: 'application/octet-stream',
        StorageClass: options.storageClass as StorageClass | undefined,
      },
    });
    try {
      await upload.done();
    } catch (err) {
      throw this.explain(err, `upload ${this.locate(key)}`);
    }
  }

  /** Puts Object Lock retention on a stored object: nobody can delete it before `retainUntil`. */
  async lockObject(key: string, mode: 'GOVERNANCE' | 'COMPLIANCE', retainUntil: Date): Promise<void> {
    try {
      await this.client.send(
        new PutObjectRetentionCommand({
          Bucket: this.storage.bucket,
          Key: this.fullKey(key),
          Retention: { Mode: mode, RetainUntilDate: retainUntil },
        }),
      );
    } catch (err) {
      throw this.explain(err, `lock ${this.locate(key)} until ${retainUntil.toISOString()}`);
    }
  }

  /**
   * For an object in an archive storage class (GLACIER, DEEP_ARCHIVE): asks for a temporary
   * readable copy, or reports that it is ready. Returns true when the object can be read now.
   */
  async retrieveArchived(key: string, days = 2): Promise<boolean> {
    try {
      const head = await this.client.send(
        new HeadObjectCommand({ Bucket: this.storage.bucket, Key: this.fullKey(key) }),
      );
      if (head.Restore?.includes('ongoing-request="false"')) return true;
      if (head.Restore?.includes('ongoing-request="true"')) return false;
      if (!['GLACIER', 'DEEP_ARCHIVE'].includes(head.StorageClass ?? '')) return true;
      await this.client.send(
        new RestoreObjectCommand({
          Bucket: this.storage.bucket,
          Key: this.fullKey(key),
          RestoreRequest: { Days: days, GlacierJobParameters: { Tier: 'Standard' } },
        }),
      );
      return false;
    } catch (err) {
      if (err instanceof S3ServiceException && err.name === 'RestoreAlreadyInProgress') return false;
      throw this.explain(err, `retrieve ${this.locate(key)} from its archive storage class`);
    }
  }

  async openArtifact(key: string): Promise<{ stream: Readable; bytes: number }> {
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.storage.bucket, Key: this.fullKey(key) }));
      return { stream: out.Body as Readable, bytes: out.ContentLength ?? 0 };
    } catch (err) {
      throw this.explain(err, `download ${this.locate(key)}`);
    }
  }

  async statObject(key: string): Promise<StoredObject | undefined> {
    try {
      const out = await this.client.send(
        new HeadObjectCommand({ Bucket: this.storage.bucket, Key: this.fullKey(key) }),
      );
      return { key, bytes: out.ContentLength ?? 0, lastModified: out.LastModified ?? new Date(0) };
    } catch (err) {
      if (err instanceof S3ServiceException && err.$metadata.httpStatusCode === 404) return undefined;
      throw this.explain(err, `stat ${this.locate(key)}`);
    }
  }

  async putJson(key: string, value: unknown): Promise<void> {
    try {
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.storage.bucket,
          Key: this.fullKey(key),
          Body: `${JSON.stringify(value, null, 2)}\n`,
          ContentType: 'application/json',
        }),
      );
    } catch (err) {
      throw this.explain(err, `write ${this.locate(key)}`);
    }
  }

  /** A small object written in one PUT (atomic: it exists whole or not at all). */
  async putBytes(key: string, body: Buffer, metadata: Record<string, string> = {}): Promise<void> {
    try {
      await this.client.send(
        new PutObjectCommand({ Bucket: this.storage.bucket, Key: this.fullKey(key), Body: body, Metadata: metadata }),
      );
    } catch (err) {
      throw this.explain(err, `write ${this.locate(key)}`);
    }
  }

  async getBytes(key: string): Promise<{ body: Buffer; metadata: Record<string, string> } | undefined> {
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.storage.bucket, Key: this.fullKey(key) }));
      const bytes = await out.Body?.transformToByteArray();
      return { body: Buffer.from(bytes ?? []), metadata: out.Metadata ?? {} };
    } catch (err) {
      if (err instanceof S3ServiceException && (err.name === 'NoSuchKey' || err.$metadata.httpStatusCode === 404)) {
        return undefined;
      }
      throw this.explain(err, `read ${this.locate(key)}`);
    }
  }

  async getText(key: string): Promise<string | undefined> {
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.storage.bucket, Key: this.fullKey(key) }));
      return await out.Body?.transformToString('utf8');
    } catch (err) {
      if (err instanceof S3ServiceException && (err.name === 'NoSuchKey' || err.$metadata.httpStatusCode === 404)) {
        return undefined;
      }
      throw this.explain(err, `read ${this.locate(key)}`);
    }
  }

  async list(prefix: string): Promise<StoredObject[]> {
    const found: StoredObject[] = [];
    let token: string | undefined;
    try {
      do {
        const out = await this.client.send(
          new ListObjectsV2Command({
            Bucket: this.storage.bucket,
            Prefix: this.fullKey(prefix),
            ContinuationToken: token,
          }),
        );
        for (const o of out.Contents ?? []) {
          if (!o.Key) continue;
          found.push({
            key: this.relativeKey(o.Key),
            bytes: o.Size ?? 0,
            lastModified: o.LastModified ?? new Date(0),
            ...(o.ETag ? { etag: o.ETag } : {}),
          });
        }
        token = out.IsTruncated ? out.NextContinuationToken : undefined;
      } while (token);
    } catch (err) {
      throw this.explain(err, `list ${this.locate(prefix)}`);
    }
    return found;
  }

  /**
   * Deletes keys for good: in a versioned bucket (Object Lock needs one) a plain delete only
   * hides the object behind a delete marker, so every version of the key is removed.
   */
  async deleteKeys(keys: string[]): Promise<void> {
    for (const key of keys) {
      const fullKey = this.fullKey(key);
      try {
        const versions = await this.versionsOf(fullKey);
        for (const versionId of versions.length > 0 ? versions : [undefined]) {
          await this.client.send(
            new DeleteObjectCommand({ Bucket: this.storage.bucket, Key: fullKey, VersionId: versionId }),
          );
        }
      } catch (err) {
        if (err instanceof S3ServiceException && err.$metadata.httpStatusCode === 404) continue;
        throw this.explain(err, `delete ${this.locate(key)}`);
      }
    }
  }

  /** Version ids of exactly this key (objects and delete markers); [] when unversioned. */
  private async versionsOf(fullKey: string): Promise<string[]> {
    const ids: string[] = [];
    let keyMarker: string | undefined;
    let versionMarker: string | undefined;
    try {
      do {
        const out = await this.client.send(
          new ListObjectVersionsCommand({
            Bucket: this.storage.bucket,
            Prefix: fullKey,
            KeyMarker: keyMarker,
            VersionIdMarker: versionMarker,
          }),
        );
        for (const v of [...(out.Versions ?? []), ...(out.DeleteMarkers ?? [])]) {
          if (v.Key === fullKey && v.VersionId && v.VersionId !== 'null') ids.push(v.VersionId);
        }
        keyMarker = out.IsTruncated ? out.NextKeyMarker : undefined;
        versionMarker = out.IsTruncated ? out.NextVersionIdMarker : undefined;
      } while (keyMarker);
    } catch (err) {
      // A server without versioning support has nothing but the plain object to delete.
      if (err instanceof S3ServiceException && [501, 405].includes(err.$metadata.httpStatusCode ?? 0)) return [];
      throw err;
    }
    return ids;
  }

  async abortIncompleteUploads(prefix: string, startedBefore?: Date): Promise<number> {
    let aborted = 0;
    try {
      let keyMarker: string | undefined;
      let uploadIdMarker: string | undefined;
      do {
        const out = await this.client.send(
          new ListMultipartUploadsCommand({
            Bucket: this.storage.bucket,
            Prefix: this.fullKey(prefix),
            KeyMarker: keyMarker,
            UploadIdMarker: uploadIdMarker,
          }),
        );
        for (const u of out.Uploads ?? []) {
          if (!u.Key || !u.UploadId) continue;
          if (startedBefore && u.Initiated && u.Initiated >= startedBefore) continue;
          await this.client.send(
            new AbortMultipartUploadCommand({ Bucket: this.storage.bucket, Key: u.Key, UploadId: u.UploadId }),
          );
          aborted++;
        }
        keyMarker = out.IsTruncated ? out.NextKeyMarker : undefined;
        uploadIdMarker = out.IsTruncated ? out.NextUploadIdMarker : undefined;
      } while (keyMarker);
    } catch (err) {
      throw this.explain(err, `clean up unfinished uploads under ${this.locate(prefix)}`);
    }
    return aborted;
  }
}
