export type { LazyVisitor } from './adapters/lazy.js';
export { createKeyRing, type KeyPurpose, type KeyRing, randomId } from './crypto.js';
export type { Duration } from './duration.js';
export {
  BinError,
  ConfigError,
  CookieError,
  type ErrorHook,
  ResolverError,
  StorageError,
  VisitorStateError,
} from './errors.js';
export type { NodeLikeRequest, NodeLikeResponse, RequestView, ResponseView } from './http.js';
export { nodeRequestView, nodeResponseView } from './http.js';
export { type AuthResolverOptions, authResolver, type VerifiedUser } from './identity/auth.js';
export type { Placement } from './identity/chain.js';
export { createProxyTrust, normalizeIp, type ProxyTrust, type TrustProxy } from './identity/client-ip.js';
export { type CookieResolver, type CookieResolverOptions, cookieResolver } from './identity/cookie.js';
export { type FingerprintOptions, fingerprintResolver } from './identity/fingerprint.js';
export type { Confidence, Identity, Resolver, ResolverContext } from './identity/types.js';
export { type Bin, type BinCache, type BinRef, bin, type ManyData, type SetOptions } from './state/cache.js';
export { type CookieStorageOptions, cookieStorage } from './state/cookie-storage.js';
export { type MemoryStorageOptions, memoryStorage } from './state/memory-storage.js';
export { type KeyvInstance, registerStorage, type StoreOption } from './state/registry.js';
export type { BinRule } from './state/router.js';
export type {
  Capability,
  RequestScopedStorage,
  Storage,
  StorageFactory,
  StorageOptions,
  StorageRequest,
  StoredBin,
  VisitorPage,
} from './state/storage.js';
export type { LinkOutcome, LinkPolicy, Visitor, VisitorChange } from './visitor.js';
export { createVisitorState, type VisitorState, type VisitorStateOptions } from './visitor-state.js';
