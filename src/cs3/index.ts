/**
 * The CS3 door of Stowage: a gRPC server wire-compatible with `cs3.storage.provider.v1beta1`
 * (ProviderAPI + SpacesAPI) and the HTTP data plane its uploads and downloads go through, plus a
 * typed client and a {@link Driver} over the wire.
 *
 * ```ts
 * import { serveCs3 } from 'stowage/cs3';
 * const server = await serveCs3({ provider, jwtSecret, grpc: '0.0.0.0:9142', http: '0.0.0.0:9143', uploadsDir });
 * ```
 *
 * @module stowage/cs3
 */
export type { Driver } from '../core/driver.js';
export { type CorsOptions, corsHandler } from '../http/cors.js';
export type {
  ProviderRequest,
  ProviderResponse,
  ProviderService,
  RequestOf,
  ResponseOf,
  SpacesRequest,
  SpacesResponse,
  SpacesService,
  Streaming,
  Unary,
} from './client.js';
export { type CallOptions, Cs3Client, type Cs3ClientOptions, type PartialMessage } from './client.js';
export { type Cs3ClientDriverOptions, createCs3ClientDriver } from './client-driver.js';
export {
  DataPlane,
  type DataPlaneOptions,
  type DownloadGrant,
  type UploadGrant,
} from './dataplane.js';
export * as Group from './gen/cs3/identity/group/v1beta1/resources.js';
export * as User from './gen/cs3/identity/user/v1beta1/resources.js';
export * as RpcCode from './gen/cs3/rpc/v1beta1/code.js';
export * as Rpc from './gen/cs3/rpc/v1beta1/status.js';
export * as ProviderApi from './gen/cs3/storage/provider/v1beta1/provider_api.js';
export * as Resources from './gen/cs3/storage/provider/v1beta1/resources.js';
export * as SpacesApi from './gen/cs3/storage/provider/v1beta1/spaces_api.js';
/** Generated from our `proto/` files: the CS3 messages and service definitions. */
export * as Types from './gen/cs3/types/v1beta1/types.js';
export * as FieldMask from './gen/google/protobuf/field_mask.js';
export {
  type JwtClaims,
  type MintOptions,
  mintRevaToken,
  requireFullScope,
  signJwt,
  type TokenUser,
  tokenUser,
  type VerifyOptions,
  verifyJwt,
} from './jwt.js';
export { type Cs3Server, type ServeCs3Options, serveCs3 } from './serve.js';
export { Cs3Service, type Cs3ServiceOptions } from './server.js';
export { TusUploads, type UploadState } from './tus.js';
