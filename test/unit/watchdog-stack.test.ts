import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { evaluateConditions, loadTemplate, REPO, resolve, type Json } from "../support/cfn.js";
import { allows, scanSdkCallsInTree, type PolicyDocument } from "../support/iam.js";
import { createEmfEmitter } from "../../agent/observe/emf.js";

/**
 * The stack's safety net and alarms (cloudformation/routeleader-nat.yaml): the watchdog role
 * held against the calls agent/watchdog/ really makes, the function's settings against the
 * environment the handler reads, and every alarm against a metric the code emits.
 */

const ACCOUNT = "123456789012";
const REGION = "eu-west-1";
const STACK = "prod-nat";
const VPC = "vpc-0123456789abcdef0";
const PARAMS = {
  "AWS::StackName": STACK,
  "AWS::Region": REGION,
  "AWS::Partition": "aws",
  "AWS::AccountId": ACCOUNT,
  "AWS::URLSuffix": "amazonaws.com",
  ClusterName: "prod-nat",
  VpcId: VPC,
  VpcCidr: "10.42.0.0/16",
  PublicSubnetA: "subnet-0a",
  PublicSubnetB: "subnet-0b",
  PublicSubnetC: "subnet-0c",
  PrivateRouteTableIds: "rtb-0a,rtb-0b,rtb-0c",
  ArtifactBucket: "rl-artifacts",
  ArtifactKey: "releases/routeleader-0.1.0-linux-arm64.tar.gz",
  ArtifactSha256: "a".repeat(64),
  ConsulBinaryUrl: "https://releases.hashicorp.com/consul/1.16.1/consul_1.16.1_linux_arm64.zip",
  ConsulBinarySha256: "b".repeat(64),
  WatchdogCodeKey: "releases/routeleader-watchdog-0.1.0.zip",
  FallbackTargets: "rtb-0a=nat-0aaaaaaaaaaaaaaa1,eni-0bbbbbbbbbbbbbbb2",
  AgentAlarms: "enabled",
};
const LOG_GROUP_ARN = `arn:aws:logs:${REGION}:${ACCOUNT}:log-group:/aws/lambda/${STACK}-watchdog:*`;

const template = loadTemplate("routeleader-nat.yaml");

/** Fn::GetAtt is not evaluated by the resolver: the two this block uses, as CloudFormation fills them. */
function withAttributes(node: Json): Json {
  if (Array.isArray(node)) return node.map(withAttributes);
  if (node === null || typeof node !== "object") return node;
  if (node["Fn::GetAtt"]) {
    const [logical] = node["Fn::GetAtt"] as [string, string];
    if (logical === "WatchdogLogGroup") return LOG_GROUP_ARN;
    return `arn:aws:${logical}`;
  }
  return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, withAttributes(v)]));
}

function resource(logical: string, params: Record<string, string> = PARAMS): Json {
  // Refs to resources, as CloudFormation fills them.
  const ctx = evaluateConditions(template, { ...params, AlarmTopic: `arn:aws:sns:${REGION}:${ACCOUNT}:${STACK}-AlarmTopic`, WatchdogFunction: `${STACK}-watchdog` });
  const r = template.Resources[logical];
  if (r.Condition && !ctx.conditions![r.Condition]) return undefined;
  return resolve(withAttributes(r), ctx);
}

const routeTable = (id: string) => `arn:aws:ec2:${REGION}:${ACCOUNT}:route-table/${id}`;
const vpc = (id: string) => `arn:aws:ec2:${REGION}:${ACCOUNT}:vpc/${id}`;
const defaultBus = `arn:aws:events:${REGION}:${ACCOUNT}:event-bus/default`;

describe("watchdog in the stack", () => {
  const policy = resource("WatchdogRole").Properties.Policies[0].PolicyDocument as PolicyDocument;
  const calls = [...new Set(scanSdkCallsInTree(join(REPO, "agent", "watchdog")).map((c) => c.action))].sort();

  it("egress: the role allows exactly the calls agent/watchdog/ makes, plus its own log stream", () => {
    expect(calls).toEqual(["ec2:DescribeInstances", "ec2:DescribeRouteTables", "ec2:ReplaceRoute", "events:PutEvents"]);
    const actions = new Set(policy.Statement.flatMap((s) => (Array.isArray(s.Action) ? s.Action : [s.Action])));
    expect([...actions].sort()).toEqual([...calls, "logs:CreateLogStream", "logs:PutLogEvents"].sort());
    expect(resource("WatchdogRole").Properties.ManagedPolicyArns).toBeUndefined();
    expect(policy.Statement.every((s) => s.Effect === "Allow" && !("NotAction" in s) && !("NotResource" in s))).toBe(true);
  });

  it("egress: least privilege: route writes only on this cluster's tables in this VPC, events only as routeleader.watchdog on the default bus, logs only its own group", () => {
    expect(allows(policy, { action: "ec2:DescribeRouteTables", resource: "*" })).toBe(true);
    const own = { "ec2:Vpc": vpc(VPC), "aws:ResourceTag/routeleader:cluster": "prod-nat" };
    expect(allows(policy, { action: "ec2:ReplaceRoute", resource: routeTable("rtb-0a"), context: own })).toBe(true);
    expect(allows(policy, { action: "ec2:ReplaceRoute", resource: routeTable("rtb-0a"), context: { ...own, "ec2:Vpc": vpc("vpc-0other") } })).toBe(false);
    expect(allows(policy, { action: "ec2:ReplaceRoute", resource: routeTable("rtb-0a"), context: { "ec2:Vpc": vpc(VPC) } })).toBe(false);
    expect(allows(policy, { action: "ec2:ReplaceRoute", resource: routeTable("rtb-0a"), context: { ...own, "aws:ResourceTag/routeleader:cluster": "other" } })).toBe(false);
    expect(allows(policy, { action: "ec2:CreateRoute", resource: routeTable("rtb-0a"), context: own })).toBe(false);
    expect(allows(policy, { action: "ec2:DeleteRoute", resource: routeTable("rtb-0a"), context: own })).toBe(false);
    expect(allows(policy, { action: "events:PutEvents", resource: defaultBus, context: { "events:source": "routeleader.watchdog" } })).toBe(true);
    expect(allows(policy, { action: "events:PutEvents", resource: defaultBus, context: { "events:source": "aws.ec2" } })).toBe(false);
    expect(allows(policy, { action: "events:PutEvents", resource: `arn:aws:events:${REGION}:${ACCOUNT}:event-bus/other`, context: { "events:source": "routeleader.watchdog" } })).toBe(false);
    expect(allows(policy, { action: "logs:PutLogEvents", resource: LOG_GROUP_ARN })).toBe(true);
    expect(allows(policy, { action: "logs:PutLogEvents", resource: `arn:aws:logs:${REGION}:${ACCOUNT}:log-group:/aws/lambda/other:*` })).toBe(false);
  });

  it("egress: the function gets the settings the handler reads, and is woken by state changes of going-away instances and every minute", () => {
    const fn = resource("WatchdogFunction").Properties;
    expect(fn).toMatchObject({ Runtime: "nodejs22.x", Handler: "index.handler", Code: { S3Bucket: "rl-artifacts", S3Key: PARAMS.WatchdogCodeKey } });
    const env = fn.Environment.Variables as Record<string, string>;
    const source = readFileSync(join(REPO, "agent", "watchdog", "settings.ts"), "utf8");
    for (const name of Object.keys(env)) expect(source, name).toContain(name);
    expect(env).toMatchObject({ ROUTELEADER_CLUSTER: "prod-nat", ROUTELEADER_VPC_ID: VPC, ROUTELEADER_TABLE_IDS: "rtb-0a,rtb-0b,rtb-0c", ROUTELEADER_TABLE_TAG: "", ROUTELEADER_FALLBACKS: PARAMS.FallbackTargets });
    expect(Number(fn.Timeout)).toBeGreaterThan(Number(template.Parameters.WatchdogGraceSeconds.MaxValue) + 30);
    const byTag = resource("WatchdogFunction", { ...PARAMS, PrivateRouteTableIds: "" }).Properties.Environment.Variables;
    expect(byTag).toMatchObject({ ROUTELEADER_TABLE_IDS: "", ROUTELEADER_TABLE_TAG: "routeleader/managed=prod-nat" });
    expect(resource("WatchdogStateChangeRule").Properties.EventPattern).toEqual({ source: ["aws.ec2"], "detail-type": ["EC2 Instance State-change Notification"], detail: { state: ["stopping", "stopped", "shutting-down", "terminated"] } });
    expect(resource("WatchdogScheduleRule").Properties.ScheduleExpression).toBe("rate(1 minute)");
    const fixture = JSON.parse(readFileSync(join(REPO, "test", "fixtures", "eventbridge", "ec2-instance-state-change-stopped.json"), "utf8"));
    expect(resource("WatchdogStateChangeRule").Properties.EventPattern["detail-type"]).toContain(fixture["detail-type"]);
    expect(resource("RouteMovedRule").Properties.EventPattern).toEqual({ source: ["routeleader.watchdog", "routeleader.agent"], "detail-type": ["routeleader route moved"], detail: { cluster: ["prod-nat"] } });
  });

  it("egress: off by default: without WatchdogCodeKey and AgentAlarms the stack creates none of it", () => {
    const defaults = { ...PARAMS, WatchdogCodeKey: "", FallbackTargets: "", AgentAlarms: "disabled" };
    for (const logical of ["WatchdogFunction", "WatchdogRole", "AlarmTopic", "RouteMovedRule", "RouteOnFallbackAlarm", "AgentDownAlarm"]) expect(resource(logical, defaults), logical).toBeUndefined();
  });

  it("egress: the agent alarms are on by default, on metrics the NAT nodes ship to a log group the stack creates with a retention", () => {
    expect(template.Parameters.AgentAlarms.Default).toBe("enabled");
    const defaults = { ...PARAMS, WatchdogCodeKey: "", FallbackTargets: "" };
    delete (defaults as Record<string, string>).AgentAlarms;
    const withDefaults = { ...defaults, AgentAlarms: template.Parameters.AgentAlarms.Default, AgentLogRetentionDays: String(template.Parameters.AgentLogRetentionDays.Default) };
    for (const logical of ["RouteWithoutHolderAlarm", "RepeatedFailoversAlarm", "AgentDownAlarm", "AlarmTopic"]) expect(resource(logical, withDefaults), logical).toBeDefined();
    const group = resource("AgentLogGroup", withDefaults);
    expect(group.Properties).toEqual({ LogGroupName: "/routeleader/prod-nat/agents", RetentionInDays: "30" });
    // The launch template tells every NAT node the group and the namespace the alarms read.
    const raw = template.Resources.NatLaunchTemplate.Properties.LaunchTemplateData.UserData["Fn::Base64"]["Fn::Join"][1][0];
    const header = resolve(raw, evaluateConditions(template, { ...withDefaults, AgentLogGroup: "/routeleader/prod-nat/agents" })) as string;
    expect(header).toContain("export RL_LOG_GROUP='/routeleader/prod-nat/agents' RL_METRICS_NAMESPACE='routeleader'");
  });

  it("egress: the NAT role may ship into that group only: create its stream, put events, find its stream", () => {
    const nat = resource("NatRole").Properties.Policies[0].PolicyDocument as PolicyDocument;
    const own = "arn:aws:logs:eu-west-1:123456789012:log-group:/routeleader/prod-nat/agents";
    for (const action of ["logs:CreateLogStream", "logs:DescribeLogStreams"]) expect(allows(nat, { action, resource: `${own}:*` }), action).toBe(true);
    expect(allows(nat, { action: "logs:PutLogEvents", resource: `${own}:log-stream:i-0a` })).toBe(true);
    expect(allows(nat, { action: "logs:PutLogEvents", resource: "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/prod-nat-watchdog:log-stream:x" })).toBe(false);
    for (const action of ["logs:CreateLogGroup", "logs:PutRetentionPolicy", "logs:DeleteLogGroup", "cloudwatch:PutMetricData"]) expect(allows(nat, { action, resource: `${own}:*` }), action).toBe(false);
  });

  it("egress: each agent alarm's namespace, metric and exact dimension set are in the lines a real emitter writes", () => {
    const lines: string[] = [];
    const clock = { now: () => 1_000_000, wallNow: () => 1_764_700_000_000 };
    const e = createEmfEmitter({
      settings: { emf: true, namespace: "routeleader", output: "stdout" },
      cluster: "prod-nat",
      instanceId: "i-0a",
      az: "eu-west-1a",
      routes: ["nat-rtb-0a"],
      clock,
      write: (l) => lines.push(l),
      election: { heldRoutes: () => [], routeStates: () => [], leaseDeadline: () => 0 },
    });
    e.listener({ type: "leaderChanged", route: "nat-rtb-0a", at: 0 });
    e.listener({ type: "acquired", route: "nat-rtb-0a", lockIndex: 4, previousHolder: "i-0b", waitedMs: 2100, at: 1 });
    e.heartbeat();
    /** "Namespace|Metric|Dim=Value,..." for every metric in every dimension set the lines publish. */
    const published = new Set<string>();
    for (const l of lines) {
      const doc = JSON.parse(l) as Record<string, unknown> & { _aws: { CloudWatchMetrics: { Namespace: string; Dimensions: string[][]; Metrics: { Name: string }[] }[] } };
      for (const d of doc._aws.CloudWatchMetrics)
        for (const set of d.Dimensions) for (const m of d.Metrics) published.add(`${d.Namespace}|${m.Name}|${set.map((k) => `${k}=${String(doc[k])}`).join(",")}`);
    }
    const agentAlarms = ["RouteWithoutHolderAlarm", "RepeatedFailoversAlarm", "AgentDownAlarm"];
    for (const logical of agentAlarms) {
      const a = resource(logical).Properties;
      const key = `${a.Namespace}|${a.MetricName}|${(a.Dimensions as { Name: string; Value: string }[]).map((d) => `${d.Name}=${d.Value}`).join(",")}`;
      expect([...published], logical).toContain(key);
    }
  });

  it("egress: every alarm watches a metric the agent or the watchdog writes, in the stack's namespace and cluster", () => {
    const emitted = readFileSync(join(REPO, "agent", "observe", "emf.ts"), "utf8") + readFileSync(join(REPO, "agent", "watchdog", "handler.ts"), "utf8");
    const alarms = Object.entries<Json>(template.Resources).filter(([, r]) => r.Type === "AWS::CloudWatch::Alarm");
    expect(alarms.map(([k]) => k).sort()).toEqual(["AgentDownAlarm", "RepeatedFailoversAlarm", "RouteAtDeadTargetAlarm", "RouteOnFallbackAlarm", "RouteWithoutHolderAlarm"]);
    for (const [logical] of alarms) {
      const a = resource(logical).Properties;
      expect(emitted, logical).toContain(`"${a.MetricName}"`);
      expect(a.Namespace).toBe("routeleader");
      expect(a.Dimensions).toEqual([{ Name: "Cluster", Value: "prod-nat" }]);
      expect(a.AlarmActions).toEqual(a.OKActions);
    }
    // Agent down: fewer heartbeats per minute than agents the groups run; no data counts as down.
    const down = resource("AgentDownAlarm").Properties;
    expect(down).toMatchObject({ MetricName: "AgentUp", Statistic: "Sum", Period: 60, ComparisonOperator: "LessThanThreshold", TreatMissingData: "breaching" });
  });
});
