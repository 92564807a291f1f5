import { isOurs, targetText, type OwnTarget, type RouteEntry } from "./route-state.js";

/** What the holder does to one route of one table. */
export type ClaimDecision =
  | { readonly write: "create"; readonly reason: string }
  | { readonly write: "replace"; readonly reason: string; readonly from: string }
  | { readonly write: "none"; readonly reason: string };

export function decideClaim(current: RouteEntry | undefined, me: OwnTarget): ClaimDecision {
  if (!current) return { write: "create", reason: "route absent" };
  const from = targetText(current) ?? "none";
  // A blackholed route can even name us (an ENI detached and re-attached): write it again.
  if (current.state === "blackhole") return { write: "replace", reason: `blackhole (target ${from} stopped or gone)`, from };
  if (isOurs(current, me)) return { write: "none", reason: "already ours" };
  return { write: "replace", reason: `points at ${from}`, from };
}

export type ReleaseDecision = { readonly write: "delete"; readonly reason: string } | { readonly write: "none"; readonly reason: string };

export function decideRelease(current: RouteEntry | undefined, me: OwnTarget, onRelease: "keep" | "delete"): ReleaseDecision {
  if (onRelease === "keep") return { write: "none", reason: "onRelease: keep" };
  if (!current) return { write: "none", reason: "route already absent" };
  if (!isOurs(current, me)) return { write: "none", reason: `no longer ours (points at ${targetText(current)})` };
  return { write: "delete", reason: "onRelease: delete" };
}
