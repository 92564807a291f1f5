import { execFile } from "node:child_process";
import { join } from "node:path";
import type { SimNode } from "./cluster.js";
import { EMULATOR_AWS } from "./moto.js";

const REPO = join(import.meta.dirname, "..", "..");

export interface NodeCliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `routeleader <args> --config <node's config>` as that node's operator would: a
 * separate process with the emulator credentials and the node's metadata endpoint, as
 * SimCluster.startAgent gives the agent. Stdout and stderr are kept apart (`--json`).
 */
export function runNodeCli(node: SimNode, args: readonly string[], timeoutMs = 60_000): Promise<NodeCliResult> {
  const env = {
    ...process.env,
    CI: "true",
    AWS_ACCESS_KEY_ID: EMULATOR_AWS.credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: EMULATOR_AWS.credentials.secretAccessKey,
    AWS_REGION: EMULATOR_AWS.region,
    AWS_EC2_METADATA_SERVICE_ENDPOINT: node.aemm.endpoint,
  };
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ["--import", "tsx", join(REPO, "agent", "cli.ts"), ...args, "--config", node.configPath], { cwd: REPO, env, timeout: timeoutMs, killSignal: "SIGKILL" }, (err, stdout, stderr) => {
      if (err && typeof err.code !== "number") {
        reject(new Error(`routeleader ${args.join(" ")} (${node.name}): ${err.message}\n${stderr}`));
        return;
      }
      resolve({ code: err ? (err.code as number) : 0, stdout, stderr });
    });
  });
}
