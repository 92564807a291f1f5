import { describe, expect, it } from "vitest";
import { ManagedProcess } from "../support/process.js";

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("test fixture processes started as a group (the demo test)", () => {
  it("killGroup stops what the leader started, even after the leader itself has exited", async () => {
    const proc = new ManagedProcess("bash", ["-c", "sleep 300 & echo child $!; exit 0"], { name: "group leader", group: true });
    const line = await proc.waitForLine(/^child \d+$/, 5000);
    const child = Number(line.split(" ")[1]);
    await proc.waitForExit(5000);
    expect(alive(child)).toBe(true);
    expect(proc.killGroup()).toBe("killed");
    for (let i = 0; i < 50 && alive(child); i++) await new Promise((r) => setTimeout(r, 20));
    // A zombie until reparented and reaped; /proc tells it from a live process.
    const state = alive(child) ? (await import("node:fs")).readFileSync(`/proc/${child}/stat`, "utf8").split(") ")[1]?.[0] : "gone";
    expect(["gone", "Z"]).toContain(state);
  });
});
