export { ConsulApi } from "./client.js";
export type { KvEntry, KvRead, SessionSpec, SessionInfo, ServiceRegistration, ServiceInstance, Member, CheckStatus } from "./client.js";
export { ConsulConnection, readTokenFile, resolveConsulSettings } from "./connection.js";
export { GossipRejoin, REJOIN_MIN_INTERVAL_MS } from "./rejoin.js";
export type { ConsulSettings, ConsulConfigSection, TokenSource } from "./connection.js";
export {
  ConsulUnavailableError,
  SessionNotFoundError,
  SessionCheckNotReadyError,
  ConsulAclError,
  ConsulRequestError,
  toConsulError,
} from "./errors.js";
