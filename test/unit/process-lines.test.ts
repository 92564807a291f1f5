import { describe, expect, it } from "vitest";
import { ManagedProcess } from "../support/process.js";

describe("test fixture processes: output lines", () => {
  it("a line written in pieces (a pipe chunk ending mid-line) reaches onLine whole, once; a last line without a newline too", async () => {
    // Three writes 100 ms apart: each arrives as its own chunk, the JSON line split across two.
    const script = [
      "const w = (s) => process.stdout.write(s);",
      "w('{\"event\":\"lost\",');",
      "setTimeout(() => w('\"route\":\"r2\"}\\nnext \\u00e9'), 100);",
      "setTimeout(() => w('t\\u00e9\\nlast'), 200);",
    ].join(" ");
    const proc = new ManagedProcess(process.execPath, ["-e", script], { name: "split writer" });
    const lines: string[] = [];
    proc.onLine((l) => lines.push(l));
    await proc.waitForLine(/^last$/, 10_000);
    expect(lines).toEqual(['{"event":"lost","route":"r2"}', "next été", "last"]);
    expect(proc.output()).toBe(lines.join("\n"));
  });
});
