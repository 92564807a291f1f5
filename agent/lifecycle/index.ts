export { completeLifecycleAction, terminationNotice, watchForTermination } from "./termination.js";
export type { TerminationNotice } from "./termination.js";
