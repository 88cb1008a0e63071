/*
 * The typed client, imported from the package entry as an app would
 * (`import ... from "rolesync"` resolves to the built dist/index.js).
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import pg from "pg";
import {
  syncRoleMemberships,
  syncRoleMembershipsByForeignId,
  syncOAuthLogin,
  withRetry,
  toRolesyncError,
  RolesyncError,
  NullArgumentError,
  InvalidArgumentError,
  UnknownMemberError,
  UnknownGroupError,
  NotAGroupError,
  SelfMembershipError,
  UnmanagedGroupError,
  BlockedMemberError,
  SerializationError,
  type SyncResult,
  type OAuthLoginResult,
} from "rolesync";
import { connect, createRoles, createTestDatabase, type TestDatabase } from "./helpers.ts";

let db: TestDatabase;
let client: pg.Client;
let pool: pg.Pool;
let users: number[];
let groups: number[];
const blockedUser = "oidc:client-blocked";

beforeAll(async () => {
  db = await createTestDatabase();
  client = await connect(db.url);
  pool = new pg.Pool({ connectionString: db.url, max: 4 });
  ({ users, groups } = await createRoles(client, { users: 3, groups: 3 }));
  await client.query(
    `insert into role (foreign_id, name, type, is_admin, is_muted, is_blocked, is_tester)
     values ($1, 'Blocked', 'user', false, false, true, false)`,
    [blockedUser],
  );
});
afterAll(async () => {
  await client?.end();
  await pool?.end();
  await db?.drop();
});

test("syncRoleMemberships works with a Client and with a Pool, and returns typed arrays", async () => {
  const first: SyncResult = await syncRoleMemberships(client, users[0], [groups[1], groups[0], groups[0]]);
  expect(first).toEqual({ added: [groups[0], groups[1]], removed: [] });
  const second = await syncRoleMemberships(pool, users[0], [groups[2]]);
  expect(second).toEqual({ added: [groups[2]], removed: [groups[0], groups[1]] });
  expect(await syncRoleMemberships(pool, users[0], [])).toEqual({ added: [], removed: [groups[2]] });
});

test("syncRoleMembershipsByForeignId creates groups, syncs the managed ones, and reports what it did", async () => {
  const { rows } = await client.query<{ foreign_id: string }>("select foreign_id from role where id = $1", [users[2]]);
  const member = rows[0].foreign_id;
  const first = await syncRoleMembershipsByForeignId(pool, member, ["group:client-a", "group:client-b"]);
  expect(first.created.length).toBe(2);
  expect(first.added).toEqual(first.created);
  expect(first).toMatchObject({ removed: [], skipped: [] });
  expect(await syncRoleMembershipsByForeignId(client, member, ["group:client-b"])).toEqual({
    added: [],
    removed: [first.created[0]],
    created: [],
    skipped: [],
  });
});

test("syncOAuthLogin creates the user on its first login, then stores a changed email, and reports what it did", async () => {
  const first: OAuthLoginResult = await syncOAuthLogin(pool, {
    memberForeignId: "oidc:client-login",
    memberName: "Client Login",
    memberEmail: "login@example.org",
    groupForeignIds: ["group:client-login"],
  });
  expect(first.memberCreated).toBe(true);
  expect(first.created).toHaveLength(1);
  expect(first).toMatchObject({ added: first.created, removed: [], skipped: [] });
  const { rows } = await client.query("select id, name, email, type::text from role where foreign_id = 'oidc:client-login'");
  expect(rows).toEqual([{ id: first.memberId, name: "Client Login", email: "login@example.org", type: "user" }]);
  // The optional claims may be left out; the prefix defaults to "group:".
  expect(await syncOAuthLogin(client, { memberForeignId: "oidc:client-login", groupForeignIds: [] })).toEqual({
    memberId: first.memberId,
    memberCreated: false,
    added: [],
    removed: first.created,
    created: [],
    skipped: [],
  });
  await syncOAuthLogin(client, {
    memberForeignId: "oidc:client-login",
    memberEmail: "login@new.example",
    groupForeignIds: ["manual:client"],
    managedPrefix: "manual:",
  });
  const after = await client.query("select email from role where id = $1", [first.memberId]);
  expect(after.rows[0].email).toBe("login@new.example");
});

test("syncRoleMemberships takes the managed prefix too", async () => {
  const err = await syncRoleMemberships(client, users[2], [groups[0]], "group:").catch((e: unknown) => e);
  expect(err).toBeInstanceOf(UnmanagedGroupError); // test groups are not named group:...
});

describe("errors are mapped from their SQLSTATE to a typed class", () => {
  const cases: [string, () => Promise<unknown>, new (...a: never[]) => RolesyncError, string][] = [
    ["a NULL element", () => syncRoleMemberships(client, users[0], [groups[0], null as unknown as number]), NullArgumentError, "22004"],
    ["a NULL role id", () => syncRoleMemberships(client, null as unknown as number, []), NullArgumentError, "22004"],
    ["an unknown member", () => syncRoleMemberships(client, 987654, [groups[0]]), UnknownMemberError, "RS001"],
    ["an unknown group", () => syncRoleMemberships(client, users[0], [987654]), UnknownGroupError, "RS002"],
    ["a user as a group", () => syncRoleMemberships(client, users[0], [users[1]]), NotAGroupError, "RS003"],
    ["the member in its own list", () => syncRoleMemberships(client, users[0], [users[0]]), SelfMembershipError, "RS004"],
    ["a name outside the prefix", () => syncRoleMembershipsByForeignId(client, "x", ["admins"]), UnmanagedGroupError, "RS005"],
    ["an over-long name", () => syncRoleMembershipsByForeignId(client, "x", ["group:" + "x".repeat(2100)]), InvalidArgumentError, "22001"],
    ["an empty name", () => syncRoleMembershipsByForeignId(client, "x", ["group:"]), InvalidArgumentError, "22023"],
    ["a blocked user's login", () => syncOAuthLogin(client, { memberForeignId: blockedUser, groupForeignIds: [] }), BlockedMemberError, "RS006"],
    ["an empty user foreign id", () => syncOAuthLogin(client, { memberForeignId: "", groupForeignIds: [] }), InvalidArgumentError, "22023"],
  ];
  test.each(cases)("%s", async (_name, call, Cls, code) => {
    const err = (await call().catch((e: unknown) => e)) as RolesyncError;
    expect(err).toBeInstanceOf(Cls);
    expect(err).toBeInstanceOf(RolesyncError);
    expect(err.code).toBe(code);
    expect(err.name).toBe(Cls.name);
    expect(err.cause).toBeDefined(); // the original pg error stays reachable
  });

  test("a multi-dimensional array maps to InvalidArgumentError (22023)", async () => {
    const err = await client
      .query("select public.sync_role_memberships($1, '{{1,2},{3,4}}'::int[])", [users[0]])
      .catch((e) => toRolesyncError(e));
    expect(err).toBeInstanceOf(InvalidArgumentError);
  });

  test("errors that are not ours pass through unchanged", () => {
    const other = Object.assign(new Error("boom"), { code: "42P01" });
    expect(toRolesyncError(other)).toBe(other);
    expect(toRolesyncError("text")).toBe("text");
  });

  test("errors carry the hint PostgreSQL sent", async () => {
    const err = await syncRoleMemberships(client, users[0], [987654]).catch((e) => e);
    expect(err.hint).toBe("Create the group roles first, or leave these ids out.");
    const blocked = await syncOAuthLogin(client, { memberForeignId: blockedUser, groupForeignIds: [] }).catch((e) => e);
    expect(blocked.hint).toMatch(/an admin blocked this account/i);
  });
});

describe("withRetry", () => {
  test("retries a REPEATABLE READ transaction whose snapshot went stale (40001), then succeeds", async () => {
    let attempts = 0;
    const retried: number[] = [];
    const result = await withRetry(
      async () => {
        attempts++;
        const c = await pool.connect();
        try {
          await c.query("begin isolation level repeatable read");
          await c.query("select 1"); // the snapshot
          if (attempts === 1) await syncRoleMemberships(client, users[1], [groups[0]]); // a concurrent change commits
          const r = await syncRoleMemberships(c, users[1], [groups[1]]);
          await c.query("commit");
          return r;
        } catch (e) {
          await c.query("rollback");
          throw e;
        } finally {
          c.release();
        }
      },
      {
        onRetry: (e, attempt) => {
          expect(e).toBeInstanceOf(SerializationError);
          retried.push(attempt);
        },
      },
    );
    expect(attempts).toBe(2);
    expect(retried).toEqual([1]);
    expect(result).toEqual({ added: [groups[1]], removed: [groups[0]] });
  });

  test("does not retry other errors", async () => {
    let attempts = 0;
    const err = await withRetry(async () => {
      attempts++;
      return syncRoleMemberships(client, users[0], [987654]);
    }).catch((e) => e);
    expect(err).toBeInstanceOf(UnknownGroupError);
    expect(attempts).toBe(1);
  });

  test("gives up after the last attempt with the SerializationError", async () => {
    let attempts = 0;
    const err = await withRetry(
      async () => {
        attempts++;
        throw Object.assign(new Error("could not serialize access"), { code: "40001" });
      },
      { attempts: 3, baseDelayMs: 1 },
    ).catch((e) => e);
    expect(attempts).toBe(3);
    expect(err).toBeInstanceOf(SerializationError);
  });
});
