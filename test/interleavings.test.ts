/*
 * Deterministic interleavings, in the style of PostgreSQL's isolation tester:
 * session A holds a transaction open, session B starts, and an observer
 * connection asserts whether B waits (and on what) before A finishes.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "vitest";
import type pg from "pg";
import {
  backendPid,
  connect,
  createRoles,
  createTestDatabase,
  groupsOf,
  sync,
  waitEvent,
  waitUntilBlocked,
  type TestDatabase,
} from "./helpers.ts";

let db: TestDatabase;
let a: pg.Client;
let b: pg.Client;
let observer: pg.Client;
let bPid: number;
let users: number[];
let g: number[];

beforeAll(async () => {
  db = await createTestDatabase();
  [a, b, observer] = await Promise.all([connect(db.url), connect(db.url), connect(db.url)]);
  bPid = await backendPid(b);
  ({ users, groups: g } = await createRoles(observer, { users: 3, groups: 4 }));
});

beforeEach(async () => {
  await observer.query("delete from public.role_membership");
});

afterEach(async () => {
  // A failed step may leave a session inside a transaction: end A's first, so B's pending call finishes.
  await a.query("rollback").catch(() => {});
  await b.query("rollback").catch(() => {});
});

afterAll(async () => {
  await Promise.all([a, b, observer].map((c) => c?.end()));
  await db?.drop();
});

const code = (p: Promise<unknown>) =>
  p.then(
    () => null,
    (e: { code?: string }) => e.code ?? "no code",
  );

describe("READ COMMITTED (the default)", () => {
  test("a second call for the same member waits for the member lock, then diffs against the first's commit", async () => {
    const [m] = users;
    await a.query("begin");
    expect(await sync(a, m, [g[0], g[1]])).toEqual({ added: [g[0], g[1]], removed: [] });
    const second = sync(b, m, [g[1], g[2]]);
    expect(await waitUntilBlocked(observer, bPid)).toBe("Lock:advisory");
    await a.query("commit");
    expect(await second).toEqual({ added: [g[2]], removed: [g[0]] });
    expect(await groupsOf(observer, m)).toEqual([g[1], g[2]]);
  });

  test("calls for different members never wait, even when they add the same groups", async () => {
    const [m1, m2] = users;
    await a.query("begin");
    await sync(a, m1, [g[0], g[1]]); // holds m1's lock and a KEY SHARE lock on the group rows (FK check)
    const other = await sync(b, m2, [g[0], g[1]]); // returns while A is still open: it did not wait
    expect(other).toEqual({ added: [g[0], g[1]], removed: [] });
    const { rows } = await observer.query("select state from pg_stat_activity where pid = $1", [
      await backendPid(a).catch(() => 0),
    ]);
    expect(rows[0]?.state).toBe("idle in transaction");
    await a.query("commit");
  });

  test("a call that changes nothing also waits its turn, then writes nothing", async () => {
    const [m] = users;
    await a.query("begin");
    await sync(a, m, [g[3]]);
    await b.query("begin");
    const second = sync(b, m, [g[3]]);
    expect(await waitUntilBlocked(observer, bPid)).toBe("Lock:advisory");
    await a.query("commit");
    expect(await second).toEqual({ added: [], removed: [] });
    const { rows } = await b.query("select txid_current_if_assigned() as xid"); // 10+ (pg_current_xact_id_if_assigned is 13+)
    expect(rows[0].xid).toBeNull(); // no transaction id: no row version, no WAL
    await b.query("commit");
  });

  test("a no-op works in a READ ONLY transaction", async () => {
    const [m] = users;
    await sync(a, m, [g[0]]);
    await b.query("begin read only");
    expect(await sync(b, m, [g[0]])).toEqual({ added: [], removed: [] });
    expect(await code(sync(b, m, [g[1]]))).toBe("25006");
    await b.query("rollback");
  });

  test("a direct insert (Aleph's ORM, an admin) goes through the guard: the sync waits for it, then sees it", async () => {
    const [m] = users;
    await a.query("begin");
    await a.query("insert into public.role_membership (group_id, member_id) values ($1, $2)", [g[0], m]);
    const second = sync(b, m, [g[0], g[1]]);
    expect(await waitUntilBlocked(observer, bPid)).toBe("Lock:advisory"); // the guard took the member lock
    await a.query("commit");
    expect(await second).toEqual({ added: [g[1]], removed: [] });
    expect(await groupsOf(observer, m)).toEqual([g[0], g[1]]);
  });

  test("a direct delete racing the sync: the sync waits for the row, finds it gone, no error", async () => {
    const [m] = users;
    await sync(observer, m, [g[0], g[1]]);
    await a.query("begin");
    await a.query("delete from public.role_membership where member_id = $1 and group_id = $2", [m, g[0]]);
    const second = sync(b, m, [g[1]]);
    expect(await waitUntilBlocked(observer, bPid)).toBe("Lock:transactionid"); // deletes take no member lock
    await a.query("commit");
    expect(await second).toEqual({ added: [], removed: [] });
    expect(await groupsOf(observer, m)).toEqual([g[1]]);
  });

  test("the guard's documented edge: a legacy login that only deletes can remove a row another legacy login kept", async () => {
    const [m] = users;
    await sync(observer, m, [g[0]]);
    // Login A (token [g0]) is past its delete: say g0's row was committed after A's DELETE began,
    // so A did not delete it.
    await a.query("begin");
    // Login B (an empty token) deletes g0's row and has not committed.
    await b.query("begin");
    await b.query("delete from public.role_membership where member_id = $1", [m]);
    // A's insert of g0 sees the row still there (B has not committed) and is skipped ...
    await a.query("insert into public.role_membership (group_id, member_id) values ($1, $2)", [g[0], m]);
    // ... B commits first, A last: A's g0 is gone. A sync, or any login with groups, puts it back.
    await b.query("commit");
    await a.query("commit");
    expect(await groupsOf(observer, m)).toEqual([]);
    expect(await sync(observer, m, [g[0]])).toEqual({ added: [g[0]], removed: [] });
  });

  test("two legacy logins of one user (delete all, then insert) never deadlock: rows first, member lock second", async () => {
    const [m] = users;
    await sync(observer, m, [g[0], g[1]]);
    await a.query("begin");
    await a.query("delete from public.role_membership where member_id = $1", [m]);
    await b.query("begin");
    const second = b.query("delete from public.role_membership where member_id = $1", [m]);
    expect(await waitUntilBlocked(observer, bPid)).toBe("Lock:transactionid"); // on A's deleted rows, holding nothing
    await a.query("insert into public.role_membership (group_id, member_id) values ($1, $2)", [g[2], m]);
    await a.query("commit");
    await second;
    await b.query("insert into public.role_membership (group_id, member_id) values ($1, $2), ($3, $2)", [g[2], m, g[3]]);
    await b.query("commit");
    expect(await groupsOf(observer, m)).toEqual([g[2], g[3]]); // the repeat of g2 was skipped, not refused
  });
});

describe("REPEATABLE READ and SERIALIZABLE", () => {
  for (const isolation of ["repeatable read", "serializable"] as const) {
    test(`${isolation}: a call whose snapshot predates another call's change fails with 40001, and the retry succeeds`, async () => {
      const [m] = users;
      await sync(observer, m, [g[0]]);
      await b.query(`begin isolation level ${isolation}`);
      await b.query("select 1"); // B's snapshot is taken here
      await sync(a, m, [g[1]]); // A changes m and commits
      // B's view of m is stale: acting on it would undo A's change without knowing it.
      expect(await code(sync(b, m, [g[0], g[2]]))).toBe("40001");
      await b.query("rollback");
      // The retry, with a fresh snapshot, diffs against A's commit.
      await b.query(`begin isolation level ${isolation}`);
      expect(await sync(b, m, [g[0], g[2]])).toEqual({ added: [g[0], g[2]], removed: [g[1]] });
      await b.query("commit");
      expect(await groupsOf(observer, m)).toEqual([g[0], g[2]]);
    });

    test(`${isolation}: a stale call that would change nothing in its snapshot also fails with 40001, not a silent no-op`, async () => {
      const [m] = users;
      await sync(observer, m, [g[0]]);
      await b.query(`begin isolation level ${isolation}`);
      await b.query("select 1");
      await sync(a, m, [g[1]]);
      // In B's snapshot m is already in exactly [g0]: returning "nothing to do" would leave A's [g1].
      expect(await code(sync(b, m, [g[0]]))).toBe("40001");
      await b.query("rollback");
      expect(await groupsOf(observer, m)).toEqual([g[1]]);
    });

    test(`${isolation}: a call waiting for the lock behind a change fails with 40001 once the change commits`, async () => {
      const [m] = users;
      await a.query("begin");
      await sync(a, m, [g[2]]);
      await b.query(`begin isolation level ${isolation}`);
      const second = code(sync(b, m, [g[3]]));
      expect(await waitUntilBlocked(observer, bPid)).toBe("Lock:advisory");
      await a.query("commit");
      expect(await second).toBe("40001");
      await b.query("rollback");
    });

    test(`${isolation}: by foreign id, a group created by a concurrent login after the snapshot gives 40001, and the retry uses it`, async () => {
      const member = `oidc:${isolation.replace(" ", "-")}-user`;
      const group = `group:${isolation.replace(" ", "-")}-new`;
      await observer.query(
        `insert into role (foreign_id, name, type, is_admin, is_muted, is_blocked, is_tester)
         values ($1, 'u', 'user', false, false, false, false), ($1 || '-2', 'u2', 'user', false, false, false, false)`,
        [member],
      );
      await b.query(`begin isolation level ${isolation}`);
      await b.query("select 1");
      await a.query("select sync_role_memberships_by_foreign_id($1, array[$2])", [`${member}-2`, group]);
      expect(await code(b.query("select sync_role_memberships_by_foreign_id($1, array[$2])", [member, group]))).toBe("40001");
      await b.query("rollback");
      await b.query(`begin isolation level ${isolation}`);
      const { rows } = await b.query("select created, cardinality(added) as added from sync_role_memberships_by_foreign_id($1, array[$2])", [member, group]);
      await b.query("commit");
      expect(rows[0]).toEqual({ created: [], added: 1 });
    });

    test(`${isolation}: with a fresh snapshot the call just works`, async () => {
      const [, m] = users;
      await b.query(`begin isolation level ${isolation}`);
      expect(await sync(b, m, [g[1]])).toEqual({ added: [g[1]], removed: [] });
      expect(await sync(b, m, [g[1]])).toEqual({ added: [], removed: [] });
      await b.query("commit");
      expect(await waitEvent(observer, bPid)).toBeNull();
    });
  }
});
