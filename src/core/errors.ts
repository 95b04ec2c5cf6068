/**
 * The one error type of Stowage, its closed set of codes, and the three mapping tables
 * (errno -> code, code -> CS3 rpc code, code -> HTTP status). Drivers map errno at their edge,
 * protocol doors map codes at theirs; nothing in between inspects messages.
 *
 * @module
 */

/**
 * Error codes, mirroring CS3 `cs3.rpc.v1beta1.Code` (without the `CODE_` prefix).
 * `UNAUTHENTICATED` and `CANCELLED` are used by the protocol doors and by aborted streams.
 */
export const ErrorCodes = [
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'UNAUTHENTICATED',
  'FAILED_PRECONDITION',
  'LOCKED',
  'INSUFFICIENT_STORAGE',
  'INVALID_ARGUMENT',
  'ABORTED',
  'CANCELLED',
  'UNIMPLEMENTED',
  'UNAVAILABLE',
  'INTERNAL',
  'TOO_EARLY',
] as const;

/** One of {@link ErrorCodes}. */
export type ErrorCode = (typeof ErrorCodes)[number];

/**
 * A finer-grained, still closed, reason attached to some errors. Protocol doors use it where their
 * specification asks for a more specific answer than the code alone gives (WebDAV's 409 for a
 * missing parent, 405 for MKCOL on an existing resource, ...).
 */
export type ErrorReason =
  | 'parent-missing'
  | 'is-folder'
  | 'not-folder'
  | 'condition'
  | 'checksum-mismatch'
  | 'checksum-unsupported'
  | 'bad-header'
  | 'size-mismatch'
  | 'invalid-path'
  | 'reserved-name'
  | 'name-too-long'
  | 'cross-space'
  | 'into-itself'
  | 'symlink'
  | 'metadata-too-large'
  | 'space-disabled'
  | 'body'
  | 'too-large'
  /** A request body that did not arrive in time. */
  | 'body-timeout'
  /** A file replaced or rewritten between its lookup and the read of its bytes. */
  | 'changed-while-read'
  /** The storage lets only a file's owner set its time, and Stowage's process is not it. */
  | 'not-owner'
  /** A modification time the storage cannot hold. */
  | 'time-out-of-range'
  /** The storage cannot set modification times (its driver has no `mtime` capability). */
  | 'mtime-unsupported';

/** Options for {@link StorageError}. */
export interface StorageErrorOptions {
  reason?: ErrorReason;
  cause?: unknown;
  /**
   * The space-relative path (`/a/b`) of the resource the error is about, when that is not the one
   * the request named: the locked member that kept a folder from being deleted, moved or replaced.
   */
  at?: string;
}

/** The only error type Stowage throws for storage failures. */
export class StorageError extends Error {
  override readonly name = 'StorageError';
  readonly code: ErrorCode;
  readonly reason?: ErrorReason;
  /** See {@link StorageErrorOptions.at}. */
  readonly at?: string;

  constructor(code: ErrorCode, message: string, options: StorageErrorOptions = {}) {
    // NOT_FOUND is an answer, not a fault (every upload of a new file meets a few): it carries no
    // stack, whose capture costs more than the rest of the error.
    const limit = Error.stackTraceLimit;
    if (code === 'NOT_FOUND') Error.stackTraceLimit = 0;
    try {
      super(message, options.cause === undefined ? undefined : { cause: options.cause });
    } finally {
      Error.stackTraceLimit = limit;
    }
    this.code = code;
    if (options.reason) this.reason = options.reason;
    if (options.at !== undefined) this.at = options.at;
  }

  /** True if `err` is a StorageError, optionally with the given code. */
  static is(err: unknown, code?: ErrorCode): err is StorageError {
    return err instanceof StorageError && (code === undefined || err.code === code);
  }

  /** Plain-object form, safe to log or serialise (no stack, no cause). */
  toJSON(): { code: ErrorCode; reason?: ErrorReason; message: string } {
    return this.reason
      ? { code: this.code, reason: this.reason, message: this.message }
      : { code: this.code, message: this.message };
  }
}

/** Table 1 of 3: operating-system errno names to codes (used by filesystem drivers only). */
export const errnoToCode: Readonly<Record<string, ErrorCode>> = Object.freeze({
  ENOENT: 'NOT_FOUND',
  ENOTDIR: 'NOT_FOUND',
  ELOOP: 'NOT_FOUND',
  EEXIST: 'ALREADY_EXISTS',
  ENOTEMPTY: 'ALREADY_EXISTS',
  EACCES: 'PERMISSION_DENIED',
  EPERM: 'PERMISSION_DENIED',
  EROFS: 'PERMISSION_DENIED',
  EISDIR: 'FAILED_PRECONDITION',
  EXDEV: 'UNIMPLEMENTED',
  ENOSPC: 'INSUFFICIENT_STORAGE',
  EDQUOT: 'INSUFFICIENT_STORAGE',
  EFBIG: 'INSUFFICIENT_STORAGE',
  ENAMETOOLONG: 'INVALID_ARGUMENT',
  EINVAL: 'INVALID_ARGUMENT',
  E2BIG: 'INVALID_ARGUMENT',
  ERANGE: 'INVALID_ARGUMENT',
  EAGAIN: 'UNAVAILABLE',
  EBUSY: 'UNAVAILABLE',
  ETIMEDOUT: 'UNAVAILABLE',
  ECONNREFUSED: 'UNAVAILABLE',
  ECONNRESET: 'UNAVAILABLE',
  ENOTCONN: 'UNAVAILABLE',
  ESTALE: 'UNAVAILABLE',
  EMFILE: 'UNAVAILABLE',
  ENFILE: 'UNAVAILABLE',
  ABORT_ERR: 'CANCELLED',
});

/** Table 2 of 3: codes to CS3 `cs3.rpc.v1beta1.Code` numbers. */
export const codeToCs3: Readonly<Record<ErrorCode, number>> = Object.freeze({
  CANCELLED: 2,
  INVALID_ARGUMENT: 4,
  NOT_FOUND: 6,
  ALREADY_EXISTS: 7,
  PERMISSION_DENIED: 8,
  UNAUTHENTICATED: 9,
  FAILED_PRECONDITION: 11,
  ABORTED: 12,
  UNIMPLEMENTED: 14,
  INTERNAL: 15,
  UNAVAILABLE: 16,
  INSUFFICIENT_STORAGE: 19,
  LOCKED: 20,
  TOO_EARLY: 21,
});

/** Table 3 of 3: codes to HTTP status codes. */
export const codeToHttp: Readonly<Record<ErrorCode, number>> = Object.freeze({
  INVALID_ARGUMENT: 400,
  UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403,
  NOT_FOUND: 404,
  ALREADY_EXISTS: 409,
  ABORTED: 409,
  FAILED_PRECONDITION: 412,
  LOCKED: 423,
  TOO_EARLY: 425,
  CANCELLED: 499,
  INTERNAL: 500,
  UNIMPLEMENTED: 501,
  UNAVAILABLE: 503,
  INSUFFICIENT_STORAGE: 507,
});

/**
 * Convert anything thrown by the OS, a stream or a library into a StorageError.
 * StorageErrors pass through unchanged. `what` names the resource for the message.
 */
export function toStorageError(err: unknown, what = 'operation'): StorageError {
  if (err instanceof StorageError) return err;
  const e = err as { code?: unknown; name?: unknown; message?: unknown } | null;
  const errno = typeof e?.code === 'string' ? e.code : undefined;
  if (e?.name === 'AbortError' || errno === 'ABORT_ERR') {
    return new StorageError('CANCELLED', `${what}: cancelled`, { cause: err });
  }
  const code = errno ? errnoToCode[errno] : undefined;
  if (code) {
    const reason: ErrorReason | undefined =
      errno === 'EISDIR' ? 'is-folder' : errno === 'ENAMETOOLONG' ? 'name-too-long' : undefined;
    return new StorageError(code, `${what}: ${describeErrno(errno!)}`, { cause: err, reason });
  }
  const msg = typeof e?.message === 'string' ? e.message : String(err);
  return new StorageError('INTERNAL', `${what}: ${msg}`, { cause: err });
}

function describeErrno(errno: string): string {
  switch (errno) {
    case 'ENOENT':
    case 'ENOTDIR':
      return 'not found';
    case 'EEXIST':
      return 'already exists';
    case 'ENOTEMPTY':
      return 'folder not empty';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied by the filesystem';
    case 'EROFS':
      return 'read-only filesystem';
    case 'ENOSPC':
      return 'no space left on the storage';
    case 'EDQUOT':
      return 'filesystem quota exceeded';
    case 'ENAMETOOLONG':
      return 'name too long';
    case 'EISDIR':
      return 'is a folder';
    case 'ELOOP':
      return 'symbolic link not followed';
    default:
      return errno.toLowerCase();
  }
}

/**
 * FAILED_PRECONDITION (reason `is-folder`) for a time asked of a folder: a folder's time follows
 * what changes below it.
 */
export function folderTimeRefused(): StorageError {
  return new StorageError('FAILED_PRECONDITION', 'a folder has no settable mtime', { reason: 'is-folder' });
}
