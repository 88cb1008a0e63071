/*
 * A network between the bench's clients and the server: delay_proxy.py (a
 * TCP proxy that delays each direction by half a round trip, since the
 * kernel here has no netem), started and tuned from here.
 *
 * The configured delay is not the round trip a cell gets: the proxy's own
 * thread hand-offs add some, and more on a busy machine. So tuneRoundTrip()
 * measures `select 1` through the proxy (pgbench, the clients the cell uses)
 * and moves the delay until the measure is within 10% of the round trip
 * asked for, and every cell reports the round trip it measured.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import path from "node:path";
import { fileURLToPath } from "node:url";

const PROXY = fileURLToPath(new URL("./delay_proxy.py", import.meta.url));

export interface DelayProxy {
  /** The URL of the database through the proxy. */
  url: string;
  /** The delay of each direction, in ms. */
  delayMs: number;
  setDelay(ms: number): Promise<void>;
  stop(): Promise<void>;
}

/** Starts delay_proxy.py in front of `url`'s server; its URL differs only in host and port. */
export async function startDelayProxy(url: string, python = "python3"): Promise<DelayProxy> {
  const target = new URL(url);
  const host = target.hostname || "127.0.0.1";
  const port = target.port || "5432";
  const child: ChildProcess = spawn(python, ["-u", PROXY, "--target", `${host}:${port}`, "--delay-ms", "0"], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  const lines = createInterface({ input: child.stdout! });
  const waiting: ((line: string) => void)[] = [];
  const early: string[] = [];
  lines.on("line", (line) => {
    const next = waiting.shift();
    if (next) next(line);
    else early.push(line);
  });
  const nextLine = () =>
    new Promise<string>((resolve, reject) => {
      const queued = early.shift();
      if (queued !== undefined) return resolve(queued);
      const onExit = (code: number | null) => reject(new Error(`the delay proxy exited (${code}) before it answered`));
      child.once("exit", onExit);
      waiting.push((line) => {
        child.off("exit", onExit);
        resolve(line);
      });
    });
  const started = await Promise.race([
    nextLine(),
    new Promise<string>((_, reject) => child.once("error", (e) => reject(new Error(`cannot start ${python} ${path.basename(PROXY)}: ${e.message}`)))),
  ]);
  const m = /^listening on 127\.0\.0\.1:(\d+)$/.exec(started);
  if (!m) throw new Error(`the delay proxy said "${started}", not where it listens`);
  const through = new URL(url);
  through.hostname = "127.0.0.1";
  through.port = m[1];
  const proxy: DelayProxy = {
    url: through.toString(),
    delayMs: 0,
    async setDelay(ms: number) {
      const value = Math.max(0, ms).toFixed(4);
      child.stdin!.write(`delay ${value}\n`);
      const answer = await nextLine();
      if (answer !== `delay ${value}`) throw new Error(`the delay proxy answered "${answer}" to "delay ${value}"`);
      proxy.delayMs = Number(value);
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      child.stdin!.end();
      await exited;
    },
  };
  return proxy;
}

/**
 * Moves the proxy's delay until `measure()` (a round trip in ms) is within
 * 10% of `targetMs`, in at most `tries` steps; returns the last measure.
 * Each step corrects the delay by half the miss (a round trip crosses the
 * proxy twice).
 */
export async function tuneRoundTrip(
  proxy: DelayProxy,
  targetMs: number,
  measure: () => Promise<number>,
  tries = 4,
): Promise<number> {
  let measured = await measure();
  for (let i = 0; i < tries && Math.abs(measured - targetMs) > 0.1 * targetMs; i++) {
    await proxy.setDelay(proxy.delayMs + (targetMs - measured) / 2);
    measured = await measure();
  }
  return measured;
}
