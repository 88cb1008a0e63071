/*
 * sync_role_memberships_by_foreign_id under concurrency, on real connections:
 * first logins that all name the same new groups, and a thousand syncs that
 * must leave hand-granted memberships alone.
 */
import { afterAll, beforeAll, expect, test } from "vitest";
import type pg from "pg";
import { connect, createTestDatabase, duplicatePairs, randomSubset, type TestDatabase } from "./helpers.ts";

const CONNECTIONS = 16;
let db: TestDatabase;
let clients: pg.Client[];

beforeAll(async () => {
  db = await createTestDatabase();
  clients = await Promise.all(Array.from({ length: CONNECTIONS + 1 }, () => connect(db.url)));
});
afterAll(async () => {
  await Promise.all((clients ?? []).map((c) => c.end()));
  await db?.drop();
});

async function users(prefix: string, n: number): Promise<string[]> {
  const { rows } = await clients[0].query<{ foreign_id: string }>(
    `insert into role (foreign_id, name, type, is_admin, is_muted, is_blocked, is_tester)
     select $1 || g, 'user ' || g, 'user', false, false, false, false from generate_series(1, $2) g
     returning foreign_id`,
    [prefix, n],
  );
  return rows.map((r) => r.foreign_id);
}

interface Result {
  added: number[];
  removed: number[];
  created: number[];
  skipped: number[];
}

test("64 first logins at once, all naming the same 8 new groups: zero errors, each group created once", async () => {
  const members = await users("oidc:first-", 64);
  const groups = Array.from({ length: 8 }, (_, i) => `group:new-team-${i}`);
  const results: Result[] = [];
  const errors: string[] = [];
  const queue = [...members];
  await Promise.all(
    clients.slice(1).map(async (c) => {
      for (let m = queue.shift(); m; m = queue.shift()) {
        // Each token lists the groups in its own order, with repeats.
        const token = [...groups, groups[0]].sort(() => Math.random() - 0.5);
        try {
          const { rows } = await c.query<Result>(
            "select * from sync_role_memberships_by_foreign_id($1, $2)",
            [m, token],
          );
          results.push(rows[0]);
        } catch (e) {
          errors.push(`${(e as { code?: string }).code}: ${(e as Error).message}`);
        }
      }
    }),
  );
  expect(errors).toEqual([]);
  const { rows } = await clients[0].query<{ foreign_id: string; n: number }>(
    "select foreign_id, count(*)::int as n from role where foreign_id like 'group:new-team-%' group by 1 order by 1",
  );
  expect(rows).toEqual(groups.map((g) => ({ foreign_id: g, n: 1 })));
  // Exactly one call created each group, and every member is in all eight.
  expect(results.flatMap((r) => r.created).length).toBe(groups.length);
  expect(results.every((r) => r.added.length === groups.length)).toBe(true);
  const { rows: counts } = await clients[0].query<{ n: number }>(
    `select count(*)::int as n from role_membership m join role g on g.id = m.group_id
      where g.foreign_id like 'group:new-team-%'`,
  );
  expect(counts[0].n).toBe(members.length * groups.length);
  expect(await duplicatePairs(clients[0])).toBe(0);
});

test("a thousand concurrent syncs leave every hand-granted membership alone, and the last commit wins", async () => {
  const members = await users("oidc:busy-", 12);
  const managed = Array.from({ length: 10 }, (_, i) => `group:team-${i}`);
  // An admin's grants, outside the managed prefix.
  await clients[0].query(
    `insert into role (foreign_id, name, type, is_admin, is_muted, is_blocked, is_tester)
     select 'manual:' || g, g, 'group', false, false, false, false from unnest(array['auditors', 'legal']) g`,
  );
  await clients[0].query(
    `insert into role_membership (group_id, member_id)
     select g.id, u.id from role g, role u where g.foreign_id like 'manual:%' and u.foreign_id = any ($1)`,
    [members],
  );
  await clients[0].query("create sequence commit_order");
  const calls: { member: string; input: string[]; seq: number }[] = [];
  const errors: string[] = [];
  const perConnection = Math.ceil(1000 / CONNECTIONS);
  await Promise.all(
    clients.slice(1).map(async (c) => {
      for (let n = 0; n < perConnection; n++) {
        const member = members[Math.floor(Math.random() * members.length)];
        const input = randomSubset(managed.map((_, i) => i)).map((i) => managed[i]);
        try {
          await c.query("begin");
          await c.query("select sync_role_memberships_by_foreign_id($1, $2)", [member, input]);
          const { rows } = await c.query("select nextval('commit_order')::int as seq");
          await c.query("commit");
          calls.push({ member, input, seq: rows[0].seq });
        } catch (e) {
          await c.query("rollback");
          errors.push(`${(e as { code?: string }).code}: ${(e as Error).message}`);
        }
      }
    }),
  );
  expect(errors).toEqual([]);
  expect(calls.length).toBeGreaterThanOrEqual(1000);
  const { rows } = await clients[0].query<{ foreign_id: string; manual: string[]; teams: string[] }>(
    `select u.foreign_id,
            array(select g.foreign_id from role_membership m join role g on g.id = m.group_id
                   where m.member_id = u.id and g.foreign_id like 'manual:%' order by 1) as manual,
            array(select g.foreign_id from role_membership m join role g on g.id = m.group_id
                   where m.member_id = u.id and g.foreign_id like 'group:%' order by 1) as teams
       from role u where u.foreign_id = any ($1)`,
    [members],
  );
  for (const r of rows) {
    expect(r.manual).toEqual(["manual:auditors", "manual:legal"]);
    const last = calls.filter((c) => c.member === r.foreign_id).sort((a, b) => b.seq - a.seq)[0];
    expect(r.teams).toEqual([...new Set(last.input)].sort());
  }
  expect(await duplicatePairs(clients[0])).toBe(0);
});
