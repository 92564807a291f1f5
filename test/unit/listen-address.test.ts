import { describe, expect, it } from "vitest";
import { parseListenAddress } from "../../agent/observe/listen-address.js";

describe("http.listen parsing", () => {
  it.each([
    ["127.0.0.1:9731", { host: "127.0.0.1", port: 9731, loopback: true }],
    [":9731", { host: "127.0.0.1", port: 9731, loopback: true }],
    ["[::1]:9731", { host: "::1", port: 9731, loopback: true }],
    ["localhost:80", { host: "localhost", port: 80, loopback: true }],
    ["0.0.0.0:9731", { host: "0.0.0.0", port: 9731, loopback: false }],
    ["10.0.1.5:9731", { host: "10.0.1.5", port: 9731, loopback: false }],
  ])("%s", (listen, expected) => {
    expect(parseListenAddress(listen)).toEqual(expected);
  });

  it("is disabled by ''", () => {
    expect(parseListenAddress("")).toBeUndefined();
  });

  it.each(["9731", "127.0.0.1", "127.0.0.1:99999", "::1:9731"])("rejects %s", (listen) => {
    expect(() => parseListenAddress(listen)).toThrow(/is not host:port/);
  });
});
