import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

/** `systemctl reload routeleader` sends SIGHUP (issue #21): the unit the bootstrap writes says so. */
describe("live: systemd reload", () => {
  it("live: the routeleader unit written by the bootstrap reloads with SIGHUP to the main process", () => {
    const script = readFileSync(join(import.meta.dirname, "..", "..", "scripts", "bootstrap.sh"), "utf8");
    const unit = /put_file \/etc\/systemd\/system\/routeleader\.service [^"]*"([^"]*)"/.exec(script)?.[1] ?? "";
    expect(unit).toMatch(/^ExecStart=.* run --config /m);
    // Escaped in the script's double quotes, so systemd (not the bootstrap's shell) expands it.
    expect(unit).toMatch(/^ExecReload=\/bin\/kill -HUP \\\$MAINPID$/m);
  });
});
