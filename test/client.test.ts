/*
 * The typed client, imported from the package entry as an app would
 * (`import ... from "rolesync"` resolves to the built dist/index.js).
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "vitest";
import pg from "pg";
import {
  syncRoleMemberships,
  syncRoleMembershipsByForeignId,
  syncOAuthLogin,
  withTransaction,
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
  NotInstalledError,
  OutdatedError,
  type Queryable,
  type SyncResult,
  type OAuthLoginResult,
} from "rolesync";
import { backendPid, connect, createRoles, createTestDatabase, deferred, groupsOf, type TestDatabase } from "./helpers.ts";

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

describe("withTransaction", () => {
  let members: number[];
  let g: number[];
  let txPool: pg.Pool;
  /** Every statement the transaction's connections ran, in order; the sync calls shortened to "sync". */
  let statements: string[];

  const recordStatements = (c: pg.ClientBase) => {
    const query = c.query.bind(c) as (...args: unknown[]) => unknown;
    Object.assign(c, {
      query: (...args: unknown[]) => {
        if (typeof args[0] === "string") statements.push(/sync_role_memberships\(/.test(args[0]) ? "sync" : args[0]);
        return query(...args);
      },
    });
  };
  const expectAllReleased = () => {
    expect(txPool.idleCount).toBe(txPool.totalCount);
    expect(txPool.waitingCount).toBe(0);
  };

  beforeAll(async () => {
    ({ users: members, groups: g } = await createRoles(client, { users: 5, groups: 3 }));
  });
  beforeEach(() => {
    statements = [];
    txPool = new pg.Pool({ connectionString: db.url, max: 2 });
    txPool.on("connect", recordStatements);
  });
  afterEach(async () => {
    await txPool.end();
  });

  test.each(["pool", "client"] as const)(
    "with a %s: a real 40001 under REPEATABLE READ is rolled back and retried on a fresh snapshot, which commits",
    async (kind) => {
      const member = kind === "pool" ? members[0] : members[1];
      await syncRoleMemberships(client, member, [g[0]]);
      const own = kind === "client" ? await connect(db.url) : undefined;
      if (own) recordStatements(own);
      try {
        const snapshotTaken = deferred();
        const otherCommitted = deferred();
        const retries: [unknown, number][] = [];
        let calls = 0;
        // Session A: takes its snapshot, waits until session B has changed the member, then syncs it.
        const body = async (c: Queryable) => {
          calls++;
          await c.query("select 1"); // the snapshot
          if (calls === 1) {
            snapshotTaken.resolve();
            await otherCommitted.promise;
          }
          return syncRoleMemberships(c, member, [g[2]]);
        };
        const options = { isolationLevel: "repeatable read", baseDelayMs: 1, onRetry: (e: unknown, n: number) => void retries.push([e, n]) } as const;
        const a = own ? withTransaction(own, body, options) : withTransaction(txPool, body, options);
        const settled = a.then(
          () => "A finished",
          () => "A failed",
        );
        expect(await Promise.race([snapshotTaken.promise.then(() => "A has its snapshot"), settled])).toBe("A has its snapshot");
        // Session B (another login of the same member) commits after A's snapshot.
        const b = await withTransaction(client, (c) => syncRoleMemberships(c, member, [g[0], g[1]]), {
          isolationLevel: "repeatable read",
        });
        expect(b).toEqual({ added: [g[1]], removed: [] });
        otherCommitted.resolve();

        // A's first attempt failed with 40001; the retry diffed against B's commit and committed.
        expect(await a).toEqual({ added: [g[2]], removed: [g[0], g[1]] });
        expect(calls).toBe(2);
        expect(retries).toHaveLength(1);
        const [error, attempt] = retries[0];
        expect(error).toBeInstanceOf(SerializationError);
        expect((error as SerializationError).code).toBe("40001");
        expect(attempt).toBe(1);
        expect(await groupsOf(client, member)).toEqual([g[2]]);
        // The failed attempt ended with a ROLLBACK, so the retry ran in a new transaction, not an aborted one (no 25P02).
        const begin = "begin isolation level repeatable read";
        expect(statements).toEqual([begin, "select 1", "sync", "rollback", begin, "select 1", "sync", "commit"]);
        if (own) {
          // A Client is left connected, outside any transaction.
          const { rows } = await client.query("select state from pg_catalog.pg_stat_activity where pid = $1", [await backendPid(own)]);
          expect(rows[0].state).toBe("idle");
        } else {
          expect(txPool.totalCount).toBeGreaterThan(0);
          expectAllReleased();
        }
      } finally {
        await own?.end();
      }
    },
  );

  test("a non-retryable error (RS001) is thrown at once, typed, after one ROLLBACK, and the client goes back to the pool", async () => {
    let calls = 0;
    const retries: number[] = [];
    const err = await withTransaction(
      txPool,
      async (c) => {
        calls++;
        return syncRoleMemberships(c, 987654, [g[0]]);
      },
      { onRetry: (_e, n) => void retries.push(n) },
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnknownMemberError);
    expect((err as RolesyncError).code).toBe("RS001");
    expect((err as RolesyncError).cause).not.toBeInstanceOf(RolesyncError); // typed once, not wrapped twice
    expect(calls).toBe(1);
    expect(retries).toEqual([]);
    expect(statements).toEqual(["begin isolation level read committed", "sync", "rollback"]);
    expect(txPool.totalCount).toBe(1);
    expectAllReleased();
  });

  test("a deadlock (40P01) is retried up to `attempts`, each attempt rolled back, then thrown as a SerializationError", async () => {
    let calls = 0;
    const retries: number[] = [];
    const err = await withTransaction(
      txPool,
      async () => {
        calls++;
        throw Object.assign(new Error("deadlock detected"), { code: "40P01" });
      },
      { attempts: 3, baseDelayMs: 1, onRetry: (_e, n) => void retries.push(n) },
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SerializationError);
    expect((err as SerializationError).code).toBe("40P01");
    expect(calls).toBe(3);
    expect(retries).toEqual([1, 2]);
    expect(statements).toEqual(Array(3).fill(["begin isolation level read committed", "rollback"]).flat());
    expectAllReleased();
  });

  test("commits what fn did and returns its result; the level may be upper case; bad options are refused before connecting", async () => {
    const result = await withTransaction(txPool, (c) => syncRoleMemberships(c, members[2], [g[0]]), { isolationLevel: "SERIALIZABLE" });
    expect(result).toEqual({ added: [g[0]], removed: [] });
    expect(statements).toEqual(["begin isolation level serializable", "sync", "commit"]);
    expect(await groupsOf(client, members[2])).toEqual([g[0]]);
    for (const isolationLevel of ["read uncommitted", "snapshot", "serializable; commit", 42]) {
      await expect(withTransaction(txPool, async () => 1, { isolationLevel: isolationLevel as never })).rejects.toThrow(RangeError);
    }
    for (const attempts of [0, 1.5, Number.NaN]) {
      await expect(withTransaction(txPool, async () => 1, { attempts })).rejects.toThrow(RangeError);
    }
    expect(statements).toHaveLength(3); // the refused calls ran nothing
    expect(txPool.totalCount).toBe(1);
    expectAllReleased();
  });

  test("fn that swallows a failed statement: COMMIT cannot commit, so it throws 25P02 and nothing is kept", async () => {
    const err = await withTransaction(txPool, async (c) => {
      await syncRoleMemberships(c, members[3], [g[1]]);
      await c.query("select 1/0").catch(() => {});
      return "done";
    }).catch((e: unknown) => e);
    expect((err as { code?: string }).code).toBe("25P02");
    expect((err as Error).message).toMatch(/nothing was committed/);
    expect(await groupsOf(client, members[3])).toEqual([]);
    expectAllReleased();
  });

  test("a Client already in a transaction is refused (25001), and that transaction is left alone", async () => {
    const own = await connect(db.url);
    try {
      await own.query("begin");
      await syncRoleMemberships(own, members[4], [g[2]]);
      let called = false;
      const err = await withTransaction(own, async () => {
        called = true;
      }).catch((e: unknown) => e);
      expect((err as { code?: string }).code).toBe("25001");
      expect(called).toBe(false);
      const { rows } = await client.query("select state from pg_catalog.pg_stat_activity where pid = $1", [await backendPid(own)]);
      expect(rows[0].state).toBe("idle in transaction"); // neither committed nor rolled back
      await own.query("rollback");
      expect(await groupsOf(client, members[4])).toEqual([]);
    } finally {
      await own.end();
    }
  });

  test("a connection that breaks inside the transaction is released with its error, so the pool discards it", async () => {
    const err = await withTransaction(txPool, async (c) => {
      const { rows } = await c.query<{ pid: number }>("select pg_backend_pid() as pid");
      await client.query("select pg_terminate_backend($1)", [rows[0].pid]);
      for (let i = 0; ; i++) {
        const gone = await client.query("select 1 from pg_catalog.pg_stat_activity where pid = $1", [rows[0].pid]);
        if (gone.rowCount === 0) break;
        if (i > 500) throw new Error("the backend did not end");
        await new Promise((r) => setTimeout(r, 10));
      }
      await c.query("select 1");
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err).not.toBeInstanceOf(RolesyncError);
    expect(txPool.totalCount).toBe(0); // discarded, not handed out again
    expectAllReleased();
    // The pool still works: it opens a new connection.
    expect(await withTransaction(txPool, (c) => syncRoleMemberships(c, members[4], []))).toEqual({ added: [], removed: [] });
  });
});

describe("a database without rolesync's functions: NotInstalledError, as the CLI's \"not installed\"", () => {
  let empty: TestDatabase;
  let emptyPool: pg.Pool;
  beforeAll(async () => {
    empty = await createTestDatabase({ empty: true });
    emptyPool = new pg.Pool({ connectionString: empty.url, max: 2 });
  });
  afterAll(async () => {
    await emptyPool?.end();
    await empty?.drop();
  });

  test("no rolesync at all: each function throws NotInstalledError (42883) saying to run `rolesync migrate`", async () => {
    const calls = [
      () => syncRoleMemberships(emptyPool, 1, [2]),
      () => syncRoleMembershipsByForeignId(emptyPool, "oidc:1", ["group:a"]),
      () => syncOAuthLogin(emptyPool, { memberForeignId: "oidc:1", groupForeignIds: [] }),
    ];
    for (const call of calls) {
      const e = await call().catch((err: unknown) => err);
      expect(e).toBeInstanceOf(NotInstalledError);
      expect(e).toBeInstanceOf(RolesyncError);
      expect(e).not.toBeInstanceOf(OutdatedError);
      expect((e as NotInstalledError).code).toBe("42883");
      expect((e as Error).message).toBe("rolesync is not installed in this database: run `rolesync migrate`");
      expect((e as NotInstalledError).hint).toMatch(/^public\.sync_\w+\(.*\) is missing, and so is rolesync\.migrations/);
      expect((e as Error).cause).toMatchObject({ code: "42883" });
    }
  });

  test("rolesync installed, the function missing (older than the client): OutdatedError naming the version to migrate with", async () => {
    const c = await connect(empty.url);
    try {
      await c.query("create schema rolesync; create table rolesync.migrations (filename text primary key)");
      const e = await syncRoleMemberships(c, 1, [2]).catch((err: unknown) => err);
      expect(e).toBeInstanceOf(OutdatedError);
      expect(e).toBeInstanceOf(NotInstalledError);
      expect((e as Error).message).toMatch(/^rolesync is older than this client \(rolesync \d+\.\d+\.\d+\): public\.sync_role_memberships\(integer, integer\[\], text\) is missing$/);
    } finally {
      await c.query("drop schema if exists rolesync cascade");
      await c.end();
    }
  });

  test("inside the caller's transaction, which the error aborted: still NotInstalledError, saying how to tell which", async () => {
    const c = await connect(empty.url);
    try {
      await c.query("begin");
      const e = await syncRoleMemberships(c, 1, [2]).catch((err: unknown) => err);
      expect(e).toBeInstanceOf(NotInstalledError);
      expect((e as Error).message).toMatch(/is missing: rolesync is not installed in this database, or is older than this client/);
      expect((e as NotInstalledError).hint).toBe("Run `rolesync check` to see which, then `rolesync migrate`.");
      await c.query("rollback");
    } finally {
      await c.end();
    }
  });

  test("any other 42883 (not rolesync's function) is left as pg threw it", async () => {
    const e = await toRolesyncError(await emptyPool.query("select no_such_function()").catch((err: unknown) => err));
    expect(e).not.toBeInstanceOf(RolesyncError);
  });
});
