import { request } from "node:http";

/**
 * Whether a Docker engine answers, within `timeoutMs`. Checks the engine's /_ping on its
 * socket (DOCKER_HOST unix:// or tcp://, else /var/run/docker.sock): a docker client binary
 * on PATH proves nothing, the daemon must answer.
 */
export function dockerEngineAvailable(env: NodeJS.ProcessEnv = process.env, timeoutMs = 500): Promise<boolean> {
  const host = env.DOCKER_HOST ?? "unix:///var/run/docker.sock";
  const target = host.startsWith("unix://")
    ? { socketPath: host.slice("unix://".length) }
    : (() => {
        const u = new URL(host.replace(/^tcp:/, "http:"));
        return { host: u.hostname, port: Number(u.port || 2375) };
      })();
  return new Promise((resolve) => {
    const req = request({ ...target, path: "/_ping", method: "GET", timeout: timeoutMs }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on("timeout", () => {
      req.destroy();
      resolve(false);
    });
    req.on("error", () => resolve(false));
    req.end();
  });
}

export type ConsulBackend = "container" | "binary";

/**
 * Which way the Consul fixture starts a dev agent: in a container where an engine answers and
 * ROUTELEADER_CONSUL_CONTAINERS=1 asks for it, else the locally built binary (always the case
 * on machines with no engine, such as CI here).
 */
export async function chooseConsulBackend(env: NodeJS.ProcessEnv = process.env): Promise<ConsulBackend> {
  if (env.ROUTELEADER_CONSUL_CONTAINERS !== "1") return "binary";
  return (await dockerEngineAvailable(env)) ? "container" : "binary";
}
