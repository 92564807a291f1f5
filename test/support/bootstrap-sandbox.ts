import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { AwsCli } from "./aws-cli.js";

/**
 * A sandbox for scripts/bootstrap.sh: a temporary ROOT the script writes under, and a PATH
 * holding only recorder stubs for every program that changes a machine (dnf, rpm, systemctl,
 * sysctl, iptables, useradd, getent, chown, aws, systemd-cat, amazon-cloudwatch-agent-ctl) plus links to a short list of
 * harmless real tools (coreutils, cmp, curl for IMDS, tar and sha256sum for the artifact,
 * python3 for a zip). A program the script calls and the sandbox does not know is "command not
 * found": nothing can reach the real host. The aws stub records `cloudformation
 * signal-resource` and `autoscaling set-instance-health`, answers `ssm get-parameter` from
 * putSsmParameter, and hands every other call (`s3 cp`, `ec2 describe-instances`, SSM when
 * shared) to the test's AwsCli (one long-lived boto3 process against moto).
 *
 * The stubs are stateful where the script asks questions (rpm -q, getent, systemctl
 * is-enabled/is-active, iptables -C), so a second run sees what the first "installed".
 */

/** Real programs the script may run as themselves: file plumbing, and curl for IMDS. */
const REAL_TOOLS = ["bash", "cat", "chmod", "cmp", "curl", "dirname", "basename", "mkdir", "mktemp", "mv", "rm", "stat", "grep", "tr", "sed", "env", "sha256sum", "cut", "tar", "gzip", "ln", "readlink", "sleep", "python3"];

/** Programs replaced by the recorder. */
export const STUBBED = ["dnf", "rpm", "systemctl", "sysctl", "iptables", "useradd", "getent", "chown", "aws", "systemd-cat", "amazon-cloudwatch-agent-ctl"];

/** The recorder every stub links to (a bash script next to this file). */
const RECORDER = readFileSync(join(import.meta.dirname, "bootstrap-recorder.sh"), "utf8");

export interface Call {
  program: string;
  args: string[];
}

export interface RunResult {
  code: number | null;
  output: string;
  calls: Call[];
}

export class BootstrapSandbox {
  readonly dir: string;
  readonly root: string;
  readonly bin: string;
  readonly state: string;
  private readonly log: string;
  private runs = 0;

  /**
   * aws: the stub that answers `aws` calls from moto (`s3 cp`, `ec2 describe-instances`). sharedSsm:
   * `aws ssm` goes there too (one parameter store for every sandbox of a launch).
   * wrap: an argv prefix every run starts under, e.g. `ip netns exec NS` (an instance's host).
   */
  constructor(private readonly options: { aws?: AwsCli; sharedSsm?: boolean; wrap?: string[] } = {}) {
    this.dir = mkdtempSync(join(tmpdir(), "rl-bootstrap-"));
    this.root = join(this.dir, "root");
    this.bin = join(this.dir, "bin");
    this.state = join(this.dir, "state");
    this.log = join(this.dir, "calls.log");
    for (const d of [this.root, this.bin, this.state, join(this.state, "ssm")]) mkdirSync(d, { recursive: true });
    const recorder = join(this.dir, "recorder");
    writeFileSync(recorder, RECORDER);
    chmodSync(recorder, 0o755);
    for (const name of STUBBED) symlinkSync(recorder, join(this.bin, name));
    for (const tool of REAL_TOOLS) {
      const real = ["/usr/bin", "/bin"].map((d) => join(d, tool)).find((p) => existsSync(p));
      if (!real) throw new Error(`the bootstrap sandbox needs ${tool} on this machine`);
      symlinkSync(real, join(this.bin, tool));
    }
  }

  /** An SSM SecureString value the aws stub returns for `get-parameter --name NAME`. */
  putSsmParameter(name: string, value: string): void {
    writeFileSync(join(this.state, "ssm", name.replaceAll("/", "_")), value);
  }

  /**
   * Runs a bootstrap script (a file) with ROOT, the stub PATH and these variables. `log` keeps
   * the calls of a run apart from another run in progress (a timer's script beside the launch).
   */
  async run(script: string, env: Record<string, string>, options: { log?: string } = {}): Promise<RunResult> {
    this.runs++;
    const log = options.log ?? this.log;
    writeFileSync(log, "");
    const [command, ...args] = [...(this.options.wrap ?? []), "/bin/bash", script];
    const child = spawn(command!, args, {
      env: {
        ...env,
        ...(this.options.sharedSsm ? { SANDBOX_SSM_SHARED: "1" } : {}),
        ...(this.options.aws ? { SANDBOX_AWS_SOCKET: this.options.aws.socket } : {}),
        ROOT: this.root,
        PATH: this.bin,
        HOME: this.dir,
        SANDBOX_LOG: log,
        SANDBOX_STATE: this.state,
        LANG: "C",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (b: Buffer) => (output += b.toString()));
    child.stderr.on("data", (b: Buffer) => (output += b.toString()));
    const code = await new Promise<number | null>((resolve) => child.once("close", (c) => resolve(c)));
    const calls = readFileSync(log, "utf8")
      .split("\n")
      .filter(Boolean)
      .map((line) => {
        const [program, ...args] = line.split("\x1f");
        return { program: program!, args };
      });
    return { code, output, calls };
  }

  /**
   * Puts a release extracted elsewhere (`shared`, the folder holding routeleader/) where the user
   * data would have extracted it (/opt/routeleader/releases/<sha256>/), as a symlink: many
   * sandboxes share one copy and snapshot() does not walk it. Returns the RL_RELEASE_DIR.
   */
  linkRelease(shared: string, sha256: string): string {
    const dir = `/opt/routeleader/releases/${sha256}`;
    mkdirSync(join(this.root, "opt/routeleader/releases"), { recursive: true });
    symlinkSync(shared, join(this.root, dir));
    return `${dir}/routeleader`;
  }

  /** Lines the scripts wrote to the console ($ROOT/dev/console, created on first use). */
  console(): string {
    const file = join(this.root, "dev/console");
    if (!existsSync(file)) {
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, "");
    }
    return readFileSync(file, "utf8");
  }

  /** path (relative to ROOT) → sha256 and mode of every file under ROOT. */
  snapshot(): Map<string, string> {
    const out = new Map<string, string>();
    const walk = (dir: string, rel: string) => {
      for (const name of readdirSync(dir).sort()) {
        const abs = join(dir, name);
        const r = `${rel}/${name}`;
        const st = lstatSync(abs);
        if (st.isSymbolicLink()) {
          out.set(r, `-> ${readlinkSync(abs)}`);
        } else if (st.isDirectory()) {
          out.set(`${r}/`, (st.mode & 0o7777).toString(8));
          walk(abs, r);
        } else {
          out.set(r, `${createHash("sha256").update(readFileSync(abs)).digest("hex")} ${(statSync(abs).mode & 0o7777).toString(8)} ${st.mtimeMs}`);
        }
      }
    };
    walk(this.root, "");
    return out;
  }

  read(path: string): string {
    return readFileSync(join(this.root, path), "utf8");
  }

  exists(path: string): boolean {
    return existsSync(join(this.root, path));
  }

  mode(path: string): string {
    return (statSync(join(this.root, path)).mode & 0o777).toString(8);
  }

  dispose(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Calls that change a machine (anything but questions and the journal wrapper). */
export function mutatingCalls(calls: Call[]): Call[] {
  return calls.filter((c) => {
    if (c.program === "systemd-cat" || c.program === "rpm" || c.program === "getent" || c.program === "aws") return false;
    if (c.program === "systemctl" && (c.args[0] === "is-enabled" || c.args[0] === "is-active")) return false;
    if (c.program === "iptables" && c.args.includes("-C")) return false;
    return true;
  });
}
