import { describe, expect, it } from "vitest";
import { AwsCallError, backoffMs, classifyAwsError, GateClosedError, toAwsError, withRetries } from "../../agent/aws/index.js";
import { ExitError } from "../../agent/exit-codes.js";

function sdkError(name: string, message: string, status: number): Error {
  return Object.assign(new Error(message), { name, $metadata: { httpStatusCode: status } });
}

describe("AWS error mapping", () => {
  it("names the missing IAM permission", () => {
    const err = toAwsError(sdkError("UnauthorizedOperation", "You are not authorized to perform this operation.", 403), "ec2:ReplaceRoute", "route nat in rtb-1");
    expect(err).toBeInstanceOf(ExitError);
    expect(err.message).toMatch(/^missing IAM permission ec2:ReplaceRoute \(route nat in rtb-1\)/);
    expect(toAwsError(sdkError("AccessDenied", "denied", 403), "ec2:DescribeRouteTables").message).toMatch(/missing IAM permission ec2:DescribeRouteTables/);
  });

  it("names an unknown id and what it is", () => {
    const err = toAwsError(sdkError("InvalidRouteTableID.NotFound", "The routeTable ID 'rtb-0123abcd' does not exist", 400), "ec2:DescribeRouteTables");
    expect(err).toBeInstanceOf(ExitError);
    expect(err.message).toMatch(/unknown route table rtb-0123abcd/);
    expect(toAwsError(sdkError("InvalidInstanceID.NotFound", "The instance ID 'i-0abc' does not exist", 400), "ec2:ReplaceRoute").message).toMatch(/unknown instance i-0abc/);
  });

  it("recognises throttling and transient failures as retryable, not fatal", () => {
    expect(classifyAwsError(sdkError("RequestLimitExceeded", "Request limit exceeded.", 503)).kind).toBe("throttled");
    expect(classifyAwsError(sdkError("Throttling", "Rate exceeded", 400)).kind).toBe("throttled");
    expect(classifyAwsError(sdkError("InternalError", "boom", 500)).kind).toBe("transient");
    expect(classifyAwsError(Object.assign(new Error("socket hang up"), { code: "ECONNRESET" })).kind).toBe("transient");
    expect(toAwsError(sdkError("RequestLimitExceeded", "x", 503), "ec2:ReplaceRoute")).toBeInstanceOf(AwsCallError);
  });

  it("full-jitter backoff stays within base × 2^n and the cap", () => {
    const throttled = classifyAwsError(sdkError("RequestLimitExceeded", "x", 503));
    expect(backoffMs(throttled, 0, { attempts: 2, deadlineMs: 1000 }, () => 0.999)).toBe(99);
    expect(backoffMs(throttled, 10, { attempts: 2, deadlineMs: 1000, capMs: 400 }, () => 0.5)).toBe(200);
    expect(backoffMs(throttled, 3, { attempts: 2, deadlineMs: 1000 }, () => 0)).toBe(0);
  });
});

describe("withRetries", () => {
  const policy = { attempts: 2, deadlineMs: 5_000 };

  it("retries throttling without spending the attempt budget", async () => {
    let calls = 0;
    const value = await withRetries("ec2:ReplaceRoute", "t", policy, async () => {
      calls++;
      if (calls <= 3) throw sdkError("RequestLimitExceeded", "x", 503);
      return "ok";
    }, { random: () => 0 });
    expect(value).toBe("ok");
    expect(calls).toBe(4);
  });

  it("stops after `attempts` unknown outcomes", async () => {
    let calls = 0;
    await expect(withRetries("ec2:ReplaceRoute", "t", policy, async () => {
      calls++;
      throw sdkError("InternalError", "boom", 500);
    }, { random: () => 0 })).rejects.toThrow(/gave up after 2 attempts/);
    expect(calls).toBe(2);
  });

  it("does not retry a fatal error", async () => {
    let calls = 0;
    await expect(withRetries("ec2:ReplaceRoute", "t", policy, async () => {
      calls++;
      throw sdkError("UnauthorizedOperation", "no", 403);
    })).rejects.toBeInstanceOf(ExitError);
    expect(calls).toBe(1);
  });

  it("asks the gate before every attempt and sends nothing once it closes", async () => {
    let calls = 0;
    let gateCalls = 0;
    await expect(withRetries("ec2:ReplaceRoute", "t", policy, async () => {
      calls++;
      throw sdkError("RequestLimitExceeded", "x", 503);
    }, { random: () => 0, proceed: async () => ++gateCalls < 3 })).rejects.toBeInstanceOf(GateClosedError);
    expect(gateCalls).toBe(3);
    expect(calls).toBe(2);
  });

  it("ends at the deadline, aborting the call in flight", async () => {
    await expect(withRetries("ec2:ReplaceRoute", "t", { attempts: 2, deadlineMs: 50 }, (signal) => new Promise((_, reject) => {
      signal.addEventListener("abort", () => reject(Object.assign(new Error("aborted"), { name: "AbortError" })));
    }))).rejects.toThrow(/no success within 50 ms/);
  });
});
