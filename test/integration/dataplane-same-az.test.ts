import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { describeEip } from "../../agent/routes/eip.js";
import { DataplaneLab } from "../support/dataplane/lab.js";
import { assertNetnsAllowed } from "../support/netns.js";

/**
 * Same-AZ connection-preserving mode: both NATs in one subnet SNAT to a secondary private IP
 * that the route's holder assigns to its ENI (with the route's Elastic IP on it), and conntrackd
 * keeps their connection state in sync. Ten long-lived TCP echo streams from the private client
 * must keep their byte streams when the holder is powered off (every process killed, link down).
 * Then the same power-off with conntrackd stopped in both NATs: the streams must die, which shows
 * that the synced state (not the SNAT address or the EIP alone) is what carries them.
 */

let lab: DataplaneLab;

beforeAll(async () => {
  assertNetnsAllowed();
  lab = await DataplaneLab.start({ sameAz: true });
}, 240_000);

afterAll(async () => {
  await lab?.stop();
}, 120_000);

describe("same-AZ connection-preserving failover", () => {
  it("dataplane: 9 of 10 TCP echo streams survive a power-off of the holder in same-AZ mode", async () => {
    const r = await lab.trial("power-off", 10);
    console.log(`same-AZ power-off: probe gap ${r.outageMs} ms; control plane ${r.controlPlaneMs} ms; router lag ${r.routerLagMs} ms; connections ${r.connections?.survived}/${r.connections?.tried} survived; errors: ${r.connections?.errors.join(", ") || "none"}`);
    expect(r.connections?.tried).toBe(10);
    expect(r.connections?.survived).toBeGreaterThanOrEqual(9);
    // The secondary IP and its Elastic IP are on the new holder.
    const holder = await lab.steady();
    const eni = holder.identity.eniId;
    const eip = await describeEip(lab.ec2, lab.eipAllocation as string);
    expect(eip).toMatchObject({ networkInterfaceId: eni, privateIpAddress: DataplaneLab.secondaryIp });
  });

  it("dataplane: without conntrackd the same power-off kills the TCP echo streams (at most 1 of 10 keeps its bytes)", async () => {
    await lab.stopConntrackd();
    const r = await lab.trial("power-off", 10);
    console.log(`same-AZ power-off without conntrackd: probe gap ${r.outageMs} ms; control plane ${r.controlPlaneMs} ms; router lag ${r.routerLagMs} ms; connections ${r.connections?.survived}/${r.connections?.tried} survived; errors: ${r.connections?.errors.join(", ") || "none (stalled)"}`);
    expect(r.connections?.tried).toBe(10);
    expect(r.connections?.survived).toBeLessThanOrEqual(1);
  }, 180_000);
});
