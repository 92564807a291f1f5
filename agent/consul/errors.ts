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
  if (status === 400 && /HTTP request to an HTTPS server/i.test(body)) return new ConsulUnavailableError(`${what} (consul.address says http:// but Consul serves HTTPS there: use https://)`);
  if (status === 404 && path.startsWith("/v1/session/renew")) return new SessionNotFoundError(what);
  if (/invalid session/i.test(body)) return new SessionNotFoundError(what);
  if (/Missing check '.*' registration|is in critical state/i.test(body)) return new SessionCheckNotReadyError(what);
  if (status >= 500 || status === 429) return new ConsulUnavailableError(what);
  return new ConsulRequestError(what, status);
}

const UNTRUSTED_CERT = new Set([
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_SIGNATURE_FAILURE",
  "CERT_UNTRUSTED",
]);

/**
 * Why a connection to Consul failed, in words an operator can act on: TLS verification
 * failures name the setting to fix; anything else is the socket error code.
 */
export function describeConnectionError(err: NodeJS.ErrnoException): string {
  const code = err.code ?? err.message;
  if (UNTRUSTED_CERT.has(code)) return `TLS: Consul's certificate is not signed by the configured CA (consul.caFile / CONSUL_CACERT) (${code})`;
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID") return `TLS: Consul's certificate does not match the server name (set consul.tlsServerName / CONSUL_TLS_SERVER_NAME to a name it holds): ${err.message}`;
  if (code === "CERT_HAS_EXPIRED" || code === "CERT_NOT_YET_VALID") return `TLS: Consul's certificate is outside its validity period (${code})`;
  if (/CERTIFICATE_REQUIRED|BAD_CERTIFICATE|UNKNOWN_CA|alert/i.test(`${code} ${err.message}`)) return `TLS: Consul refused the handshake; does it require a client certificate (consul.certFile and consul.keyFile)? (${code})`;
  if (code === "EPROTO" || code === "ERR_SSL_WRONG_VERSION_NUMBER") return `TLS handshake failed (${code}): is consul.address http:// for an HTTPS port, or https:// for an HTTP one?`;
  return code;
}
