import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DataplaneLab } from "../support/dataplane/lab.js";
import { assertNetnsAllowed } from "../support/netns.js";

/**
 * What applications feel: two NAT namespaces driven by routeleader agents on real Consul and
 * moto, a router namespace that follows moto's route table, and a 100 packets/s UDP probe from
 * the private client to the internet host. A graceful stop of the holder must not drop the
 * probe stream for longer than the control plane took plus the router's own lag, with a wide
 * margin for a shared 2-core machine.
 */

let lab: DataplaneLab;

beforeAll(async () => {
  assertNetnsAllowed();
  lab = await DataplaneLab.start();
}, 240_000);

afterAll(async () => {
  await lab?.stop();
}, 120_000);

describe("data plane through a graceful handover", () => {
  it("dataplane: the probe gap after a graceful stop of the holder stays within the control-plane time plus the router lag", async () => {
    const r = await lab.trial("graceful-stop");
    console.log(`graceful stop: probe gap ${r.outageMs} ms; control plane ${r.controlPlaneMs} ms; router lag ${r.routerLagMs} ms`);
    // The old NAT keeps forwarding until the route moves: the gap is the switch itself.
    expect(r.outageMs).toBeLessThan(r.controlPlaneMs + r.routerLagMs + 2000);
    expect(r.routerLagMs).toBeLessThan(2000);
  });

  it("dataplane: after a power-off and power-on of the holder, the route moving back to it carries the probes again", async () => {
    const off = await lab.trial("power-off");
    console.log(`power-off: probe gap ${off.outageMs} ms; control plane ${off.controlPlaneMs} ms; router lag ${off.routerLagMs} ms`);
    // The powered-off NAT now stands by; stopping the holder moves the route back to it.
    const back = await lab.trial("graceful-stop");
    console.log(`graceful stop back to the powered-on node: probe gap ${back.outageMs} ms; router lag ${back.routerLagMs} ms`);
    expect(back.outageMs).toBeLessThan(back.controlPlaneMs + back.routerLagMs + 2000);
  });
});
