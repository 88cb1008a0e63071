/*
 * Many real connections syncing the same member at once, with noise on other
 * members. Each call runs in its own transaction and, after the sync, takes a
 * number from a sequence: the sync holds the member lock until commit, so for
 * one member these numbers are in commit order. Replaying the calls in that
 * order must reproduce every call's (added, removed) exactly, and the final
 * set must be the input of the last call to commit.
 */
import { afterAll, beforeAll, expect, test } from "vitest";
import type pg from "pg";
import {
  connect,
  createRoles,
  createTestDatabase,
  duplicatePairs,
  groupsOf,
  percentile,
  randomSubset,
  type Isolation,
  type TestDatabase,
} from "./helpers.ts";

const CONNECTIONS = 16;
const CALLS_PER_CONNECTION = 40; // 640 calls, about 70% of them on one member

let db: TestDatabase;
let clients: pg.Client[] = [];
let users: number[];
let groups: number[];

beforeAll(async () => {
  db = await createTestDatabase();
  clients = await Promise.all(Array.from({ length: CONNECTIONS + 1 }, () => connect(db.url)));
  ({ users, groups } = await createRoles(clients[0], { users: 9, groups: 12 }));
  await clients[0].query("create sequence commit_order");
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.end()));
  await db?.drop();
});

interface Call {
  member: number;
  input: number[];
  seq: number;
  added: number[];
  removed: number[];
}

/** Mulberry32: a seeded generator, so a failing run can be replayed. */
function rng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function storm(isolation: Isolation, seed: number) {
  const hot = users[0];
  const profiles = [groups.slice(0, 3), groups.slice(2, 6), [groups[7]]];
  const calls: Call[] = [];
  const errors: string[] = [];
  const retries = { count: 0 };
  const latencies: number[] = [];
  await Promise.all(
    clients.slice(1).map(async (client, i) => {
      const rnd = rng(seed + i);
      for (let n = 0; n < CALLS_PER_CONNECTION; n++) {
        const member = rnd() < 0.7 ? hot : users[1 + Math.floor(rnd() * (users.length - 1))];
        // Most logins repeat one of a few group sets (no-ops); the rest are random changes.
        const input = rnd() < 0.6 ? profiles[Math.floor(rnd() * profiles.length)] : randomSubset(groups, rnd);
        const started = performance.now();
        for (let attempt = 1; ; attempt++) {
          try {
            await client.query(`begin isolation level ${isolation}`);
            const { rows } = await client.query(
              "select added, removed from public.sync_role_memberships($1::int, $2::int[])",
              [member, input],
            );
            const { rows: seq } = await client.query("select nextval('commit_order')::int as seq");
            await client.query("commit");
            calls.push({ member, input, seq: seq[0].seq, ...rows[0] });
            break;
          } catch (e) {
            await client.query("rollback").catch(() => {});
            const code = (e as { code?: string }).code;
            // Under REPEATABLE READ a stale snapshot is refused with 40001: retry, as documented.
            if (code === "40001" && isolation !== "read committed" && attempt < 100) {
              retries.count++;
              // Back off with jitter, as a client should: 16 writers on one member contend hard.
              await new Promise((r) => setTimeout(r, rnd() * Math.min(2 ** attempt, 100)));
              continue;
            }
            errors.push(`${code}: ${(e as Error).message}`);
            break;
          }
        }
        latencies.push(performance.now() - started);
      }
    }),
  );
  return { calls, errors, retries: retries.count, latencies: latencies.sort((a, b) => a - b) };
}

/** Replays each member's calls in commit order and checks every reported diff. */
async function expectSerialHistory(calls: Call[]) {
  const byMember = new Map<number, Call[]>();
  for (const c of calls) byMember.set(c.member, [...(byMember.get(c.member) ?? []), c]);
  for (const [member, list] of byMember) {
    list.sort((a, b) => a.seq - b.seq);
    let state = new Set<number>();
    for (const call of list) {
      const target = new Set(call.input);
      expect(call.added).toEqual([...target].filter((g) => !state.has(g)).sort((a, b) => a - b));
      expect(call.removed).toEqual([...state].filter((g) => !target.has(g)).sort((a, b) => a - b));
      state = target;
    }
    const last = list[list.length - 1];
    expect(await groupsOf(clients[0], member)).toEqual([...new Set(last.input)].sort((a, b) => a - b));
  }
}

test(`${CONNECTIONS} connections, ${CONNECTIONS * CALLS_PER_CONNECTION} calls, READ COMMITTED: no error, no duplicate, last commit wins`, async () => {
  const { calls, errors, latencies } = await storm("read committed", 1);
  expect(errors).toEqual([]);
  expect(calls.length).toBe(CONNECTIONS * CALLS_PER_CONNECTION);
  expect(calls.filter((c) => c.member === users[0]).length).toBeGreaterThan(300);
  expect(await duplicatePairs(clients[0])).toBe(0);
  const { rows } = await clients[0].query(
    "select count(*)::int as n from (select 1 from public.role_membership group by group_id, member_id having count(*) > 1) d",
  );
  expect(rows[0].n).toBe(0);
  await expectSerialHistory(calls);
  console.log(
    `stress (read committed): ${calls.length} calls, 0 errors, p50 ${percentile(latencies, 50).toFixed(1)} ms, ` +
      `p99 ${percentile(latencies, 99).toFixed(1)} ms`,
  );
});

test("the same storm under REPEATABLE READ: stale snapshots fail with 40001 and succeed on retry, and the history is still serial", async () => {
  // Start from a known state so this test does not depend on the previous one.
  await clients[0].query("delete from public.role_membership");
  const { calls, errors, retries } = await storm("repeatable read", 2);
  expect(errors).toEqual([]);
  expect(calls.length).toBe(CONNECTIONS * CALLS_PER_CONNECTION);
  expect(await duplicatePairs(clients[0])).toBe(0);
  await expectSerialHistory(calls);
  console.log(`stress (repeatable read): ${calls.length} calls, ${retries} retried after 40001, 0 other errors`);
});
