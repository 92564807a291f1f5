export { InstanceMetadata } from "./imds.js";
export type { Identity, ImdsOptions } from "./imds.js";
