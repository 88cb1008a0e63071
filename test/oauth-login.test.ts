/*
 * sync_oauth_login under concurrency, on real connections: a user's first
 * login arriving 16 times at once (two tabs, retries, a double redirect),
 * and 16 new users whose tokens all name the same new group. Aleph's
 * check-then-insert fails both with unique violations on role_foreign_id_key.
 */
import { afterAll, beforeAll, expect, test } from "vitest";
import type pg from "pg";
import { connect, createTestDatabase, duplicatePairs, withTransaction, type TestDatabase } from "./helpers.ts";

const CONNECTIONS = 16;
const ROUNDS = 6;
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

interface Login {
  member_id: number;
  member_created: boolean;
  added: number[];
  removed: number[];
  created: number[];
  skipped: number[];
}

const LOGIN = "select * from sync_oauth_login($1, $2, $3, $4)";

/** Runs one login per connection, all at once; returns the results and the errors. */
async function storm(calls: (c: pg.Client, i: number) => Promise<Login>): Promise<{ results: Login[]; errors: string[] }> {
  const results: Login[] = [];
  const errors: string[] = [];
  await Promise.all(
    clients.slice(1).map(async (c, i) => {
      try {
        results.push(await calls(c, i));
      } catch (e) {
        errors.push(`${(e as { code?: string }).code}: ${(e as Error).message}`);
      }
    }),
  );
  return { results, errors };
}

async function login(c: pg.Client, member: string, name: string | null, email: string | null, groups: string[]) {
  const { rows } = await c.query<Login>(LOGIN, [member, name, email, groups]);
  return rows[0];
}

async function groupsOf(member: string): Promise<string[]> {
  const { rows } = await clients[0].query<{ foreign_id: string }>(
    `select g.foreign_id from role_membership m join role g on g.id = m.group_id join role u on u.id = m.member_id
      where u.foreign_id = $1 order by 1`,
    [member],
  );
  return rows.map((r) => r.foreign_id);
}

test(`${CONNECTIONS} concurrent first logins of one new user, ${ROUNDS} rounds: zero errors, the user created once`, async () => {
  // An existing group the token names, beside one that each round's first login creates.
  await clients[0].query(
    `insert into role (foreign_id, name, type, is_admin, is_muted, is_blocked, is_tester)
     values ('group:staff', 'staff', 'group', false, false, false, false)`,
  );
  for (let round = 1; round <= ROUNDS; round++) {
    const member = `oidc:storm-${round}`;
    const token = ["group:staff", `group:round-${round}`];
    const { results, errors } = await storm((c, i) =>
      // The same token, in its own order, with and without the optional claims.
      login(c, member, i % 3 ? `User ${round}` : null, i % 2 ? `user${round}@example.org` : null, i % 2 ? token : [...token].reverse()),
    );
    expect(errors).toEqual([]);
    expect(results).toHaveLength(CONNECTIONS);
    const { rows } = await clients[0].query<{ id: number; name: string; type: string }>(
      "select id, name, type::text from role where foreign_id = $1",
      [member],
    );
    expect(rows).toHaveLength(1);
    expect(rows[0].type).toBe("user");
    expect(results.filter((r) => r.member_created)).toHaveLength(1);
    expect(new Set(results.map((r) => r.member_id))).toEqual(new Set([rows[0].id]));
    // The round's group was created by exactly one of the logins, and the user joined each group once.
    expect(results.flatMap((r) => r.created)).toHaveLength(1);
    expect(results.flatMap((r) => r.added)).toHaveLength(token.length);
    expect(results.flatMap((r) => r.removed)).toEqual([]);
    expect(await groupsOf(member)).toEqual([...token].sort());
  }
  const { rows } = await clients[0].query<{ n: number }>(
    "select count(*)::int as n from role where foreign_id like 'group:round-%'",
  );
  expect(rows[0].n).toBe(ROUNDS);
  expect(await duplicatePairs(clients[0])).toBe(0);
});

test(`${CONNECTIONS} new users at once, all naming one new group: zero errors, the group created once`, async () => {
  const members = Array.from({ length: CONNECTIONS }, (_, i) => `oidc:newcomer-${i}`);
  const { results, errors } = await storm((c, i) =>
    login(c, members[i], `Newcomer ${i}`, `newcomer${i}@example.org`, ["group:launch", "group:launch"]),
  );
  expect(errors).toEqual([]);
  expect(results.every((r) => r.member_created)).toBe(true);
  const { rows: group } = await clients[0].query<{ id: number }>("select id from role where foreign_id = 'group:launch'");
  expect(group).toHaveLength(1);
  expect(results.flatMap((r) => r.created)).toEqual([group[0].id]);
  expect(results.every((r) => r.added.length === 1 && r.added[0] === group[0].id)).toBe(true);
  const { rows: joined } = await clients[0].query<{ foreign_id: string }>(
    `select u.foreign_id from role_membership m join role u on u.id = m.member_id
      where m.group_id = $1 order by 1`,
    [group[0].id],
  );
  expect(joined.map((r) => r.foreign_id)).toEqual([...members].sort());
  expect(await duplicatePairs(clients[0])).toBe(0);
});

test("a login that changes nothing takes no transaction id; a new email takes one", async () => {
  const c = clients[1];
  const member = "oidc:quiet";
  await login(c, member, "Quiet", "quiet@example.org", ["group:quiet"]);
  const xid = () => c.query<{ xid: string | null }>("select txid_current_if_assigned()::text as xid").then((r) => r.rows[0].xid);
  const unchanged = await withTransaction(c, async () => {
    const r = await login(c, member, "Quiet", "quiet@example.org", ["group:quiet"]);
    return { r, xid: await xid() };
  });
  expect(unchanged.r).toMatchObject({ member_created: false, added: [], removed: [], created: [], skipped: [] });
  expect(unchanged.xid).toBeNull();
  const withoutClaims = await withTransaction(c, async () => {
    await login(c, member, null, "", ["group:quiet"]);
    return xid();
  });
  expect(withoutClaims).toBeNull();
  const changed = await withTransaction(c, async () => {
    await login(c, member, "Quiet", "quiet@new.example", ["group:quiet"]);
    return xid();
  });
  expect(changed).not.toBeNull();
});

test("REPEATABLE READ: a first login whose snapshot predates another's creation of the user fails with 40001, and a retry succeeds", async () => {
  const [a, b] = [clients[1], clients[2]];
  const member = "oidc:snapshot";
  const attempt = () =>
    withTransaction(
      a,
      async () => {
        await a.query("select 1"); // takes the snapshot
        if (!(await b.query("select from role where foreign_id = $1", [member])).rowCount) {
          await login(b, member, "Snap", null, ["group:snap"]); // commits after a's snapshot
        }
        return login(a, member, "Snap", null, ["group:snap"]);
      },
      "repeatable read",
    );
  const first = await attempt().catch((e: { code?: string }) => e);
  expect((first as { code?: string }).code).toBe("40001");
  const retry = await attempt();
  expect(retry).toMatchObject({ member_created: false, added: [], created: [] });
  const { rows } = await clients[0].query<{ n: number }>("select count(*)::int as n from role where foreign_id = $1", [member]);
  expect(rows[0].n).toBe(1);
});
