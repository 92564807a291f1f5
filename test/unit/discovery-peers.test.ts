import { describe, expect, it } from "vitest";
import { defaultMemberInstanceId, forceLeaveCandidates, peerTagFilters, toPeerInstance } from "../../agent/discovery/index.js";

const self = { instanceId: "i-0aaaaaaaaaaaaaaaa", state: "running", tags: { "aws:autoscaling:groupName": "nat", Name: "nat-a" } };

describe("peer tag filters", () => {
  it("default to this instance's Auto Scaling group", () => {
    expect(peerTagFilters(undefined, self)).toEqual({ "aws:autoscaling:groupName": "nat" });
  });
  it("configured tags win", () => {
    expect(peerTagFilters({ role: "nat" }, self)).toEqual({ role: "nat" });
  });
  it("an instance outside a group without configured tags is told what to set", () => {
    expect(peerTagFilters(undefined, { ...self, tags: {} })).toEqual({ error: expect.stringMatching(/set discovery.tags/) });
  });
});

describe("force-leave candidates", () => {
  const member = (name: string, status = 1) => ({ name, addr: "10.0.0.1", status, tags: {} });
  it("are members named after instances that are neither this one nor running peers, and not already left", () => {
    const members = [member("i-0aaaaaaaaaaaaaaaa"), member("i-0bbbbbbbbbbbbbbbb"), member("i-0cccccccccccccccc", 4), member("i-0dddddddddddddddd", 3), member("consul-server-1", 4)];
    const candidates = forceLeaveCandidates(members, self.instanceId, new Set(["i-0bbbbbbbbbbbbbbbb"]), defaultMemberInstanceId);
    expect([...candidates.entries()]).toEqual([["i-0cccccccccccccccc", "i-0cccccccccccccccc"]]);
  });
});

describe("instances from EC2", () => {
  it("keep id, state, private IP, VPC and tags", () => {
    expect(toPeerInstance({ InstanceId: "i-1", State: { Name: "running" }, PrivateIpAddress: "10.0.0.5", VpcId: "vpc-1", Tags: [{ Key: "a", Value: "b" }] })).toEqual({ instanceId: "i-1", state: "running", privateIp: "10.0.0.5", vpcId: "vpc-1", tags: { a: "b" } });
    expect(toPeerInstance({})).toBeUndefined();
  });
});
