/**
 * Process exit codes, documented in README.md ("Exit codes"). Scripts and systemd units
 * depend on them: change none without changing the README.
 */
export const EXIT = {
  ok: 0,
  /** Unexpected failure at run time (a bug, or a dependency failing in an unclassified way). */
  failure: 1,
  /** The command line is wrong: unknown verb or flag, missing --config. */
  usage: 2,
  /** The configuration is invalid: unreadable, malformed YAML, unknown key, bad value, rule broken. */
  config: 3,
  /** Instance metadata (IMDSv2) unreachable or incomplete: not on EC2, or tokens refused. */
  identity: 4,
  /** Consul unreachable, without a leader, or refusing our ACL token. */
  consul: 5,
  /** AWS refused a call: missing IAM permission, unknown id, a route table in another VPC. */
  aws: 6,
  /** `status` found Consul and EC2 disagreeing (drift). */
  drift: 7,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** An error that carries the exit code the CLI should end with. */
export class ExitError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "ExitError";
  }
}
