import { Writable } from "node:stream";
import pino from "pino";
import { describe, expect, it } from "vitest";
import type { Clock } from "../../agent/clock.js";
import type { EC2Client } from "@aws-sdk/client-ec2";
import { createSourceDestReader, SourceDestStateUnknownError } from "../../agent/health/source-dest-state.js";

/** Time moves only when the test says so (the reader never sleeps). */
class FakeClock implements Clock {
  t = 0;
  now = () => this.t;
  wallNow = () => this.t;
  sleep = () => Promise.reject(new Error("the reader must not sleep"));
}

/** A scripted EC2: each read takes the next answer (true/false = check off/on, Error = failure). */
function scripted(answers: (boolean | Error)[]) {
  const reads: number[] = [];
  let clock: FakeClock | undefined;
  return {
    reads,
    bind(c: FakeClock) {
      clock = c;
    },
    read: async () => {
      reads.push(clock?.now() ?? -1);
      const next = answers.length > 1 ? answers.shift() : answers[0];
      if (next instanceof Error) throw next;
      return next as boolean;
    },
  };
}

const throttled = () => Object.assign(new Error("Request limit exceeded."), { name: "RequestLimitExceeded", $metadata: { httpStatusCode: 503 } });

function setup(answers: (boolean | Error)[], options: { refreshMs?: number; maxStaleMs?: number } = {}) {
  const clock = new FakeClock();
  const ec2 = scripted(answers);
  ec2.bind(clock);
  const lines: { level: number; msg: string }[] = [];
  const log = pino({ level: "info" }, new Writable({ write: (chunk, _enc, done) => (lines.push(JSON.parse(String(chunk)) as { level: number; msg: string }), done()) }));
  const reader = createSourceDestReader({ ec2: {} as EC2Client, identity: { instanceId: "i-1" }, clock, log, read: ec2.read, refreshMs: options.refreshMs ?? 60_000, maxStaleMs: options.maxStaleMs ?? 600_000 });
  /** What the nat check would see: the value, or "unknown" when the reader rejects. */
  const check = () => reader().then((off) => off, (err: unknown) => (err instanceof SourceDestStateUnknownError ? "unknown" : `other: ${(err as Error).message}`));
  const settle = () => new Promise<void>((resolve) => setImmediate(resolve));
  return { clock, ec2, reader, check, settle, lines };
}

describe("source/dest check state for the nat check (fail static, fake clock)", () => {
  it("asks EC2 once per refresh interval, not once per check run", async () => {
    const { clock, ec2, check, settle } = setup([true]);
    for (let s = 0; s < 150; s++) {
      clock.t = s * 1000;
      expect(await check()).toBe(true);
      await settle();
    }
    expect(ec2.reads).toEqual([0, 60_000, 120_000]);
  });

  it("keeps the last good answer through an EC2 outage shorter than maxStale: no failed check", async () => {
    const { clock, ec2, check, settle, lines } = setup([true, throttled()], { refreshMs: 2000, maxStaleMs: 600_000 });
    expect(await check()).toBe(true);
    // 5 minutes of throttling: every run still sees "off", EC2 is asked every 2 s, not every second.
    for (let s = 1; s <= 300; s++) {
      clock.t = s * 1000;
      expect(await check()).toBe(true);
      await settle();
    }
    expect(ec2.reads.length).toBe(151);
    expect(lines.filter((l) => l.level === 40)).toHaveLength(1);
    expect(lines.find((l) => l.level === 40)?.msg).toMatch(/keeping the last good answer for up to 600 s/);
  });

  it("past maxStale without a good read the state is unknown (the check fails, saying why); a good read ends it", async () => {
    const answers: (boolean | Error)[] = [true, throttled()];
    const { clock, check, settle, reader, lines } = setup(answers, { refreshMs: 10_000, maxStaleMs: 60_000 });
    expect(await check()).toBe(true);
    clock.t = 60_000;
    expect(await check()).toBe(true);
    await settle();
    clock.t = 60_001;
    await expect(reader()).rejects.toThrow(/source\/dest check state unknown: last read from EC2 60 s ago, more than 60 s \(EC2: RequestLimitExceeded/);
    expect(lines.filter((l) => l.level === 50)).toHaveLength(1);
    // EC2 answers again.
    answers.splice(0, answers.length, true);
    clock.t = 70_000;
    expect(await check()).toBe("unknown");
    await settle();
    clock.t = 70_001;
    expect(await check()).toBe(true);
    expect(lines.at(-1)?.msg).toMatch(/readable from EC2 again/);
  });

  it("a good read that says the check is ON is a real failure: false from then on", async () => {
    const { clock, check, settle } = setup([true, false], { refreshMs: 2000 });
    expect(await check()).toBe(true);
    clock.t = 2000;
    expect(await check()).toBe(true);
    await settle();
    clock.t = 2001;
    expect(await check()).toBe(false);
  });

  it("before the first good read: unknown, and a failed first read is retried at most every 5 s", async () => {
    const answers: (boolean | Error)[] = [new Error("socket hang up")];
    const { clock, ec2, check } = setup(answers, { refreshMs: 60_000 });
    for (let s = 0; s < 12; s++) {
      clock.t = s * 1000;
      expect(await check()).toBe("unknown");
    }
    expect(ec2.reads).toEqual([0, 5000, 10_000]);
    answers.splice(0, 1, true);
    clock.t = 15_000;
    expect(await check()).toBe(true);
  });

  it("an answer without the instance or its SourceDestCheck is a failed read, not 'on'", async () => {
    const { DescribeInstancesCommand } = await import("@aws-sdk/client-ec2");
    const clock = new FakeClock();
    let answer: unknown = { Reservations: [{ Instances: [{ InstanceId: "i-1", SourceDestCheck: false }] }] };
    const ec2 = { send: async (cmd: unknown) => (cmd instanceof DescribeInstancesCommand ? answer : undefined) } as unknown as EC2Client;
    const reader = createSourceDestReader({ ec2, identity: { instanceId: "i-1" }, clock, log: pino({ level: "silent" }), refreshMs: 1000 });
    expect(await reader()).toBe(true);
    answer = { Reservations: [] };
    clock.t = 1000;
    expect(await reader()).toBe(true);
    await new Promise((r) => setImmediate(r));
    clock.t = 2000;
    expect(await reader()).toBe(true);
    await new Promise((r) => setImmediate(r));
    answer = { Reservations: [{ Instances: [{ InstanceId: "i-1", SourceDestCheck: true }] }] };
    clock.t = 3000;
    await reader();
    await new Promise((r) => setImmediate(r));
    expect(await reader()).toBe(false);
  });
});
