/*
 * The bench's network: scripts/bench/delay_proxy.py in front of the test
 * server. What it must do, checked without timing its precision (this
 * machine is shared and noisy; the bench measures the round trip it gets):
 * bytes pass intact both ways, on several connections at once; no chunk
 * arrives before its delay; the delay changes on `delay <ms>`; the proxy
 * stops when its parent closes its stdin. And tuneRoundTrip's arithmetic.
 */
import { afterAll, beforeAll, expect, test } from "vitest";
import { spawn } from "node:child_process";
import { performance } from "node:perf_hooks";
import path from "node:path";
import pg from "pg";
import { packageRoot } from "../src/migrate.ts";
import { startDelayProxy, tuneRoundTrip, type DelayProxy } from "../scripts/bench/network.ts";
import { createTestDatabase, type TestDatabase } from "./helpers.ts";

let db: TestDatabase;
let proxy: DelayProxy;

beforeAll(async () => {
  db = await createTestDatabase({ empty: true });
  proxy = await startDelayProxy(db.url);
});
afterAll(async () => {
  await proxy?.stop();
  await db?.drop();
});

async function client(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  return c;
}

test("bytes pass intact both ways, a 3 MB result and 4 connections at once", async () => {
  const clients = await Promise.all([1, 2, 3, 4].map(() => client(proxy.url)));
  try {
    const big = await clients[0].query("select repeat('x', 3000000) as s, md5(repeat('x', 3000000)) as m");
    expect(big.rows[0].s.length).toBe(3_000_000);
    const sent = "é".repeat(200_000) + "end";
    const echo = await clients[1].query("select $1::text as s, md5($1::text) as m", [sent]);
    expect(echo.rows[0].s).toBe(sent);
    const sums = await Promise.all(
      clients.map(async (c, i) => {
        let sum = 0;
        for (let k = 0; k < 50; k++) sum += (await c.query("select $1::int + $2::int as n", [i, k])).rows[0].n;
        return sum;
      }),
    );
    expect(sums).toEqual([0, 1, 2, 3].map((i) => 50 * i + (49 * 50) / 2));
  } finally {
    await Promise.all(clients.map((c) => c.end()));
  }
});

test("no answer comes back sooner than two delays, and `delay <ms>` changes it", async () => {
  const c = await client(proxy.url);
  try {
    const fastest = async () => {
      let min = Infinity;
      for (let i = 0; i < 5; i++) {
        const t = performance.now();
        await c.query("select 1");
        min = Math.min(min, performance.now() - t);
      }
      return min;
    };
    await proxy.setDelay(5);
    expect(proxy.delayMs).toBe(5);
    expect(await fastest()).toBeGreaterThanOrEqual(2 * 5 * 0.98);
    await proxy.setDelay(20);
    expect(await fastest()).toBeGreaterThanOrEqual(2 * 20 * 0.98);
  } finally {
    await proxy.setDelay(0);
    await c.end();
  }
});

test("a control line it cannot read is answered with an error, and changes nothing", async () => {
  const child = spawn("python3", [path.join(packageRoot, "scripts", "bench", "delay_proxy.py"), "--target", "127.0.0.1:1", "--delay-ms", "0"]);
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
  await new Promise((r) => setTimeout(r, 300));
  child.stdin.write("delay soon\ndelay -1\ndelay 2\n");
  child.stdin.end();
  // stdin closed: it stops by itself.
  expect(await exited).toBe(0);
  expect(out.trim().split("\n")).toEqual([
    expect.stringMatching(/^listening on 127\.0\.0\.1:\d+$/),
    "error: expected `delay <ms>` with ms at least 0, not 'delay soon'",
    "error: expected `delay <ms>` with ms at least 0, not 'delay -1'",
    "delay 2",
  ]);
});

test("stopped, it accepts no more connections", async () => {
  const p = await startDelayProxy(db.url);
  const c = await client(p.url);
  await c.end();
  await p.stop();
  await expect(client(p.url)).rejects.toMatchObject({ code: "ECONNREFUSED" });
});

test("tuneRoundTrip moves the delay until the measure is within 10% of the target", async () => {
  // A proxy whose hand-offs add 0.3 ms to each round trip, and a measure that reads it back.
  const fake = { url: "", delayMs: 0, setDelay: async (ms: number) => void (fake.delayMs = Math.max(0, ms)), stop: async () => {} };
  const measure = async () => 0.05 + 0.3 + 2 * fake.delayMs;
  expect(await tuneRoundTrip(fake, 0.5, measure)).toBeCloseTo(0.5, 2);
  expect(fake.delayMs).toBeCloseTo(0.075, 3);
  expect(await tuneRoundTrip(fake, 2, measure)).toBeCloseTo(2, 2);
  // A target below what the proxy itself adds: the delay stays at 0, and the measure says so.
  expect(await tuneRoundTrip(fake, 0.1, measure)).toBeCloseTo(0.35, 2);
  expect(fake.delayMs).toBe(0);
});
