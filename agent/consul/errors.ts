/** Consul could not answer: connection refused, timeout, 5xx, no leader. "Unknown", never "lost". */
export class ConsulUnavailableError extends Error {
  override name = "ConsulUnavailableError";
}

/** The session does not exist any more (renew 404, acquire "invalid session"). */
export class SessionNotFoundError extends Error {
  override name = "SessionNotFoundError";
}

/** Session creation refused because a bound check is critical or not registered yet. */
export class SessionCheckNotReadyError extends Error {
  override name = "SessionCheckNotReadyError";
}

/** The ACL token is missing or lacks a permission (HTTP 403). */
export class ConsulAclError extends Error {
  override name = "ConsulAclError";
}

/** Any other refusal (4xx) that retrying will not fix. */
export class ConsulRequestError extends Error {
  override name = "ConsulRequestError";
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

/** Maps a Consul HTTP status and body to one of the error classes above. */
export function toConsulError(method: string, path: string, status: number, body: string): Error {
  const what = `consul ${method} ${path}: HTTP ${status}: ${body.trim().slice(0, 300)}`;
  if (status === 403) return new ConsulAclError(`${what} (the ACL token lacks a permission)`);
  if (status === 404 && path.startsWith("/v1/session/renew")) return new SessionNotFoundError(what);
  if (/invalid session/i.test(body)) return new SessionNotFoundError(what);
  if (/Missing check '.*' registration|is in critical state/i.test(body)) return new SessionCheckNotReadyError(what);
  if (status >= 500 || status === 429) return new ConsulUnavailableError(what);
  return new ConsulRequestError(what, status);
}
