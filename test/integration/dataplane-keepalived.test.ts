import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DataplaneLab } from "../support/dataplane/lab.js";
import { assertNetnsAllowed } from "../support/netns.js";

/**
 * The keepalived baseline in the same simulator: the fault lab's stock keepalived contender
 * (VRRP advert 1 s, a notify script that runs boto3's ReplaceRoute) inside the two NAT
 * namespaces. Its writer reaches EC2 only through the router's address, so the route moves only
 * when a live NAT's keepalived wrote it, and the probes must follow the route it wrote.
 */

let lab: DataplaneLab;

beforeAll(async () => {
  assertNetnsAllowed();
  lab = await DataplaneLab.start({ contender: "keepalived" });
}, 240_000);

afterAll(async () => {
  await lab?.stop();
}, 120_000);

describe("keepalived in the data-plane simulator", () => {
  it("dataplane: keepalived: a power-off of the MASTER moves the route to the BACKUP and the probes follow within the control-plane time plus the router lag", async () => {
    const r = await lab.trial("power-off");
    console.log(`keepalived power-off: probe gap ${r.outageMs} ms; control plane ${r.controlPlaneMs} ms (write ${r.writeMs} ms); router lag ${r.routerLagMs} ms`);
    // The dead NAT forwards nothing: the gap is the whole takeover, bounded by what it took plus the switch.
    expect(r.outageMs).toBeGreaterThan(1000);
    expect(r.outageMs).toBeLessThan(r.controlPlaneMs + r.routerLagMs + 2000);
  });
});
