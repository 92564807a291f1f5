import { createLogger, type Logger } from "../../agent/observe/log.js";

/** A pino logger whose JSON lines are kept in memory, parsed, for assertions. */
export function captureLogger(level = "debug"): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger(level, {
    destination: {
      write(chunk: string) {
        for (const line of chunk.split("\n")) if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      },
    },
  });
  return { logger, lines };
}
