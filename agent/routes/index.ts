export { RouteController, SourceDestCheckError, summarizeClaim } from "./controller.js";
export type { ClaimResult, RouteControllerDeps, RouteObservation, TableAction, WriteGate } from "./controller.js";
export { decideClaim, decideRelease } from "./decide.js";
export type { ClaimDecision, ReleaseDecision } from "./decide.js";
export { canonicalCidr, findRoute, isOurs, targetText, toTableSnapshot } from "./route-state.js";
export type { OwnTarget, RouteEntry, TableSnapshot } from "./route-state.js";
export { describeSelector, matchesSelector, selectorIds, selectorSubnets } from "./selector.js";
export type { SelectorContext } from "./selector.js";
export { assertOneRoutePerEntry, resolveRouteTables, selectTables } from "./resolve.js";
