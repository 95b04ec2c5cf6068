/**
 * A typed CS3 client for the ProviderAPI and SpacesAPI, over grpc-js. Requests are given as partial
 * messages (defaults filled in); every call carries the access token as `x-access-token`.
 *
 * ```ts
 * const c = new Cs3Client('127.0.0.1:9142', { token });
 * const res = await c.provider('stat', { ref: { path: '/project/lab/a.txt' } });
 * ```
 *
 * @module
 */
import * as grpc from '@grpc/grpc-js';
import { StorageError } from '../core/errors.js';
import { checkStatus } from './convert.js';
import * as api from './gen/cs3/storage/provider/v1beta1/provider_api.js';
import * as spacesApi from './gen/cs3/storage/provider/v1beta1/spaces_api.js';

/** The ProviderAPI service definition (generated). */
export type ProviderService = typeof api.ProviderAPIService;
/** The SpacesAPI service definition (generated). */
export type SpacesService = typeof spacesApi.SpacesAPIService;
type Service = ProviderService | SpacesService;

/** The request message type of a method definition. */
export type RequestOf<D> = D extends { requestSerialize: (v: infer R) => Buffer } ? R : never;
/** The response message type of a method definition. */
export type ResponseOf<D> = D extends { responseDeserialize: (b: Buffer) => infer R } ? R : never;
/** Names of a service's unary methods. */
export type Unary<S> = { [K in keyof S]: S[K] extends { responseStream: false } ? K : never }[keyof S];
/** Names of a service's server-streaming methods. */
export type Streaming<S> = { [K in keyof S]: S[K] extends { responseStream: true } ? K : never }[keyof S];

/** A request as partial message: unset fields get their defaults. */
export type PartialMessage<T> = T extends Buffer | string | number | boolean | undefined
  ? T
  : T extends readonly (infer U)[]
    ? PartialMessage<U>[]
    : { [K in keyof T]?: PartialMessage<T[K]> };

/** The request type of a ProviderAPI method. */
export type ProviderRequest<M extends keyof ProviderService> = RequestOf<ProviderService[M]>;
/** The response type of a ProviderAPI method. */
export type ProviderResponse<M extends keyof ProviderService> = ResponseOf<ProviderService[M]>;
/** The request type of a SpacesAPI method. */
export type SpacesRequest<M extends keyof SpacesService> = RequestOf<SpacesService[M]>;
/** The response type of a SpacesAPI method. */
export type SpacesResponse<M extends keyof SpacesService> = ResponseOf<SpacesService[M]>;

/** Options for {@link Cs3Client}. */
export interface Cs3ClientOptions {
  /** The Reva access token, or a function giving the current one. */
  token: string | (() => string | Promise<string>);
  /** Channel credentials (default: insecure h2c, as Reva's default). */
  credentials?: grpc.ChannelCredentials;
  /** Deadline per call in ms (default 60 s; streams: none). */
  deadlineMs?: number;
  /** grpc-js channel options (message size limits, keepalive, ...). */
  channelOptions?: grpc.ChannelOptions;
}

/** Options of one call. */
export interface CallOptions {
  signal?: AbortSignal;
}

/** A CS3 client (ProviderAPI + SpacesAPI). */
export class Cs3Client {
  private readonly client: grpc.Client;

  constructor(
    readonly address: string,
    private readonly opts: Cs3ClientOptions,
  ) {
    this.client = new grpc.Client(address, opts.credentials ?? grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
      ...opts.channelOptions,
    });
  }

  private async metadata(): Promise<grpc.Metadata> {
    const md = new grpc.Metadata();
    const token = typeof this.opts.token === 'string' ? this.opts.token : await this.opts.token();
    if (token) md.set('x-access-token', token);
    return md;
  }

  private async call<S extends Service, M extends Unary<S>>(
    service: S,
    messages: Record<string, unknown>,
    method: M,
    req: PartialMessage<RequestOf<S[M]>>,
    opts?: CallOptions,
  ): Promise<ResponseOf<S[M]>> {
    const def = service[method] as grpc.MethodDefinition<unknown, ResponseOf<S[M]>>;
    const type = messages[requestType(method as string)] as { fromPartial(o: unknown): unknown };
    const md = await this.metadata();
    opts?.signal?.throwIfAborted();
    return new Promise((resolve, reject) => {
      const call = this.client.makeUnaryRequest(
        def.path,
        (v: unknown) => def.requestSerialize(type.fromPartial(v)),
        def.responseDeserialize,
        req,
        md,
        { deadline: Date.now() + (this.opts.deadlineMs ?? 60_000) },
        (err, res) => (err ? reject(grpcError(err, method as string)) : resolve(res!)),
      );
      opts?.signal?.addEventListener('abort', () => call.cancel(), { once: true });
    });
  }

  private async *callStream<S extends Service, M extends Streaming<S>>(
    service: S,
    messages: Record<string, unknown>,
    method: M,
    req: PartialMessage<RequestOf<S[M]>>,
    opts?: CallOptions,
  ): AsyncGenerator<ResponseOf<S[M]>> {
    const def = service[method] as grpc.MethodDefinition<unknown, ResponseOf<S[M]>>;
    const type = messages[requestType(method as string)] as { fromPartial(o: unknown): unknown };
    const md = await this.metadata();
    const call = this.client.makeServerStreamRequest(
      def.path,
      (v: unknown) => def.requestSerialize(type.fromPartial(v)),
      def.responseDeserialize,
      req,
      md,
    );
    const stop = () => call.cancel();
    opts?.signal?.addEventListener('abort', stop, { once: true });
    try {
      for await (const msg of call as AsyncIterable<ResponseOf<S[M]>>) yield msg;
    } catch (err) {
      throw grpcError(err as grpc.ServiceError, method as string);
    } finally {
      opts?.signal?.removeEventListener('abort', stop);
      call.cancel(); // a consumer that stops early ends the call
    }
  }

  /** A unary ProviderAPI call; the answer's `status` is not checked (see {@link providerOk}). */
  provider<M extends Unary<ProviderService>>(
    method: M,
    req: PartialMessage<ProviderRequest<M>>,
    opts?: CallOptions,
  ): Promise<ProviderResponse<M>> {
    return this.call(api.ProviderAPIService, api, method, req, opts);
  }

  /** A unary ProviderAPI call whose answer must have status OK (else its StorageError is thrown). */
  async providerOk<M extends Unary<ProviderService>>(
    method: M,
    req: PartialMessage<ProviderRequest<M>>,
    opts?: CallOptions,
  ): Promise<ProviderResponse<M>> {
    const res = await this.provider(method, req, opts);
    checkStatus((res as { status?: Parameters<typeof checkStatus>[0] }).status, method);
    return res;
  }

  /** A streaming ProviderAPI call; each message's status is checked. */
  async *providerStream<M extends Streaming<ProviderService>>(
    method: M,
    req: PartialMessage<ProviderRequest<M>>,
    opts?: CallOptions,
  ): AsyncGenerator<ProviderResponse<M>> {
    for await (const msg of this.callStream(api.ProviderAPIService, api, method, req, opts)) {
      checkStatus((msg as { status?: Parameters<typeof checkStatus>[0] }).status, method);
      yield msg;
    }
  }

  /** A SpacesAPI call; the answer's `status` is not checked. */
  spaces<M extends Unary<SpacesService>>(
    method: M,
    req: PartialMessage<SpacesRequest<M>>,
    opts?: CallOptions,
  ): Promise<SpacesResponse<M>> {
    return this.call(spacesApi.SpacesAPIService, spacesApi, method, req, opts);
  }

  /** A SpacesAPI call whose answer must have status OK. */
  async spacesOk<M extends Unary<SpacesService>>(
    method: M,
    req: PartialMessage<SpacesRequest<M>>,
    opts?: CallOptions,
  ): Promise<SpacesResponse<M>> {
    const res = await this.spaces(method, req, opts);
    checkStatus((res as { status?: Parameters<typeof checkStatus>[0] }).status, method);
    return res;
  }

  close(): void {
    this.client.close();
  }
}

function requestType(method: string): string {
  return `${method[0]!.toUpperCase()}${method.slice(1)}Request`;
}

/** A transport failure as a StorageError. */
function grpcError(err: grpc.ServiceError, what: string): StorageError {
  const s = grpc.status;
  const code =
    err.code === s.CANCELLED
      ? 'CANCELLED'
      : err.code === s.UNAUTHENTICATED
        ? 'UNAUTHENTICATED'
        : err.code === s.UNIMPLEMENTED
          ? 'UNIMPLEMENTED'
          : err.code === s.INVALID_ARGUMENT
            ? 'INVALID_ARGUMENT'
            : err.code === s.PERMISSION_DENIED
              ? 'PERMISSION_DENIED'
              : err.code === s.INTERNAL
                ? 'INTERNAL'
                : 'UNAVAILABLE';
  return new StorageError(code, `${what}: ${err.details || err.message}`, { cause: err });
}
