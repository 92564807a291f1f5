import pino, { type Logger } from "pino";

export type { Logger };

/**
 * JSON lines for machines and journald; pino-pretty when a person runs the agent in a
 * terminal. Secrets are redacted wherever they could appear.
 */
export function createLogger(level: string, options: { pretty?: boolean; destination?: pino.DestinationStream } = {}): Logger {
  const logger = buildLogger(level, options);
  latest = logger;
  return logger;
}

let latest: Logger | undefined;

/**
 * The logger the CLI made for this process (the last createLogger), for the few modules that
 * log before the agent hands them one (the Consul token's source, chosen while the settings
 * are resolved); undefined when no logger was made (library use, unit tests).
 */
export function processLogger(): Logger | undefined {
  return latest;
}

function buildLogger(level: string, options: { pretty?: boolean; destination?: pino.DestinationStream }): Logger {
  const pretty = options.pretty ?? (process.stdout.isTTY && !process.env.CI);
  const base: pino.LoggerOptions = {
    level,
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: ["token", "*.token", "headers.authorization", "*.headers['x-consul-token']", "consulToken"], censor: "[redacted]" },
  };
  if (options.destination) return pino(base, options.destination);
  if (pretty) return pino({ ...base, transport: { target: "pino-pretty", options: { translateTime: "HH:MM:ss.l", ignore: "pid" } } });
  return pino(base);
}
