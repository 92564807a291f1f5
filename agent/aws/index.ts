export { awsClientOptions, createAutoScalingClient, createEc2Client } from "./clients.js";
export type { AwsClientOptions } from "./clients.js";
export { AwsCallError, classifyAwsError, describeAwsFailure, isFatal, toAwsError } from "./errors.js";
export type { AwsErrorKind, AwsFailure } from "./errors.js";
export { GateClosedError, backoffMs, withRetries } from "./retry.js";
export type { RetryHooks, RetryPolicy } from "./retry.js";
