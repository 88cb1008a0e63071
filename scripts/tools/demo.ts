/*
 * `npm run demo`: the bug and the fix, end to end, in about half a minute.
 *   1. an Aleph 4.0 database, as Aleph's own migrations leave it (Alembic
 *      at 8adf50aadcb0, no key on role_membership);
 *   2. two concurrent OAuth callbacks for one user, through Aleph's
 *      delete-then-insert, until a membership is stored twice;
 *   3. the next legacy login failing as Aleph's did (StaleDataError, HTTP 500);
 *   4. the migrations, with progress, and what the dedupe archived;
 *   5. a login storm through sync_role_memberships_by_foreign_id;
 *   6. a report.
 * Without DATABASE_URL it runs on a throwaway embedded PostgreSQL; with it,
 * in a database of its own on that server, created and dropped here.
 */
import pg from "pg";
import { createDatabase, dropDatabase, startServerOrExit, uniqueName, type Server } from "../server/db.ts";
import { runMigrations } from "../../src/migrate.ts";
import { syncRoleMembershipsByForeignId } from "../../src/client.ts";
import { aleph40 } from "../server/fixtures.ts";
import { OneLineError, takePgOption, unlessInterrupted } from "../server/embedded.ts";

const LOGINS = Number(process.env.DEMO_LOGINS ?? 600);
const CONNECTIONS = 16;
const USERS = 40;

const say = (s = "") => console.log(s);
const step = (n: number, title: string) => say(`\n${n}. ${title}`);

async function connect(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  // A connection the server ends (Ctrl-C stops it too) fails the next query, not the process.
  c.on("error", () => {});
  await c.connect();
  return c;
}

/** Aleph's handle_oauth before the fix: clear_roles(), then add_role() per group, then commit. */
async function legacyLogin(c: pg.Client, member: number, groups: number[]) {
  await c.query("begin");
  try {
    await c.query("delete from role_membership where member_id = $1", [member]);
    for (const g of groups) await c.query("insert into role_membership (group_id, member_id) values ($1, $2)", [g, member]);
    await c.query("commit");
  } catch (e) {
    await c.query("rollback");
    throw e;
  }
}

async function story(url: string, serverLabel: string) {
  const admin = await connect(url);
  const [tab1, tab2] = [await connect(url), await connect(url)];
  try {
    step(1, `An Aleph 4.0 database (Alembic at 8adf50aadcb0) on ${serverLabel}: role_membership has no key`);
    await aleph40(admin, { users: USERS, groups: 12 });
    const { rows: who } = await admin.query<{ id: number; foreign_id: string }>(
      "select id, foreign_id from role where type = 'user' order by id limit 1",
    );
    const alice = who[0];
    const { rows: grs } = await admin.query<{ id: number }>(
      "select id from role where type = 'group' order by id limit 3",
    );
    const token = grs.map((g) => g.id);
    const { rows: size } = await admin.query("select count(*)::int as n from role_membership");
    say(`   ${USERS} users, 12 groups, ${size[0].n} memberships; user ${alice.foreign_id} is role ${alice.id}`);

    step(2, "Two OAuth callbacks for that user at once (two tabs, a retry), through Aleph's delete-then-insert");
    let attempts = 0;
    let copies = 0;
    while (copies < 2 && attempts < 50) {
      attempts++;
      await Promise.all([legacyLogin(tab1, alice.id, token), legacyLogin(tab2, alice.id, token)]);
      const { rows } = await admin.query<{ n: number }>(
        "select max(c)::int as n from (select count(*) as c from role_membership where member_id = $1 group by group_id) x",
        [alice.id],
      );
      copies = rows[0].n ?? 0;
    }
    const { rows: dups } = await admin.query(
      "select group_id, member_id, count(*)::int as copies from role_membership group by 1, 2 having count(*) > 1 order by 1",
    );
    say(`   after ${attempts} pair(s) of concurrent logins, memberships stored more than once:`);
    for (const d of dups) say(`     group ${d.group_id}, member ${d.member_id}: ${d.copies} copies`);

    step(3, "The user's next login, as SQLAlchemy runs it: one DELETE per membership, expecting 1 row each");
    await tab1.query("begin");
    for (const g of token) {
      const { rowCount } = await tab1.query("delete from role_membership where group_id = $1 and member_id = $2", [g, alice.id]);
      if (rowCount !== 1) {
        say(`   DELETE ... WHERE group_id = ${g} AND member_id = ${alice.id}  -> ${rowCount} rows`);
        say(`   StaleDataError: DELETE statement on table 'role_membership' expected to delete 1 row(s); Only ${rowCount} were matched.`);
        say("   -> HTTP 500. Every login of this user fails like this until someone cleans the table by hand.");
        break;
      }
    }
    await tab1.query("rollback");

    step(4, "The migrations, as `npm run migrate` applies them");
    const { steps } = await runMigrations({
      databaseUrl: url,
      onEvent: (e) => {
        if (e.type === "migration") say(`   → ${e.name}`);
        if (e.type === "skipped") say(`   → ${e.name}: nothing to do here, recorded`);
        if (e.type === "progress") say(`     … ${e.step}: ${e.detail || "running"} (${e.seconds} s)`);
        if (e.type === "retry") say(`     retry ${e.attempt}: ${e.reason}`);
      },
    });
    say(`   ${steps.length} migrations in ${steps.reduce((s, x) => s + x.seconds, 0).toFixed(1)} s`);
    const { rows: archived } = await admin.query(
      `select reason, group_id, member_id, count(*)::int as n from rolesync.role_membership_removed
        group by 1, 2, 3 order by 1, 2, 3`,
    );
    say("   the dedupe archived in rolesync.role_membership_removed:");
    for (const a of archived) say(`     ${a.reason}: group ${a.group_id}, member ${a.member_id} (${a.n} row)`);
    // The constraint that keys the table now: rolesync's own, on Aleph 4.0, because Aleph 4.1's upgrade adds role_membership_pkey.
    const { rows: pk } = await admin.query(
      `select c.conname, pg_get_constraintdef(c.oid) as def from pg_constraint c
        where c.conrelid = 'role_membership'::regclass and c.conname = rolesync.role_membership_key()`,
    );
    say(`   ${pk[0].conname}: ${pk[0].def}`);
    say("     (rolesync's own name: Aleph 4.1's upgrade adds role_membership_pkey beside it, and the next `rolesync migrate` drops this one)");
    const { rows: after } = await tab1.query(
      "select count(*)::int as n from role_membership where group_id = $1 and member_id = $2",
      [token[0], alice.id],
    );
    say(`   the same per-row DELETE now matches ${after[0].n} row: the 500 is gone`);

    step(5, `A login storm: ${LOGINS} logins on ${CONNECTIONS} connections, ${USERS} users, one call each`);
    say("   select * from sync_role_memberships_by_foreign_id(<user>, <the token's groups>)");
    const report = await storm(url, admin);
    step(6, "Report");
    say(`   logins                      ${report.logins} (${report.concurrentSameUser} while another login of the same user was running)`);
    say(`   errors                      ${report.errors}`);
    say(`   duplicate memberships       ${report.duplicates}`);
    say(`   groups created on the fly   ${report.created} (each once, however many first logins named it)`);
    say(`   latency                     p50 ${report.p50.toFixed(1)} ms, p99 ${report.p99.toFixed(1)} ms`);
    say(`   no-op logins                ${report.noops} of ${report.logins}; rows they wrote: ${report.noopRowsWritten}, transaction ids they took: ${report.noopXids}`);
    if (report.errors || report.duplicates || report.noopRowsWritten || report.noopXids) {
      throw new Error("the storm's report is not clean");
    }
  } finally {
    await Promise.all([admin.end(), tab1.end(), tab2.end()]);
  }
}

interface StormReport {
  logins: number;
  errors: number;
  duplicates: number;
  created: number;
  p50: number;
  p99: number;
  noops: number;
  noopRowsWritten: number;
  noopXids: number;
  concurrentSameUser: number;
}

async function storm(url: string, admin: pg.Client): Promise<StormReport> {
  const { rows: users } = await admin.query<{ foreign_id: string }>(
    "select foreign_id from role where type = 'user' order by id",
  );
  // The identity provider's groups: the 12 the database has, and 6 it will meet for the first time.
  const names = [
    ...Array.from({ length: 12 }, (_, i) => `group:team-${i + 1}`),
    ...Array.from({ length: 6 }, (_, i) => `group:new-project-${i + 1}`),
  ];
  // Each user has a usual token; one login in five brings a change.
  const usual = new Map(users.map((u, i) => [u.foreign_id, names.filter((_, j) => (i + j) % 4 === 0)]));
  const clients = await Promise.all(Array.from({ length: CONNECTIONS }, () => connect(url)));
  const latencies: number[] = [];
  const running = new Map<string, number>();
  const r = { logins: 0, errors: 0, created: 0, noops: 0, noopRowsWritten: 0, noopXids: 0, concurrentSameUser: 0 };
  let remaining = LOGINS;
  try {
    await Promise.all(
      clients.map(async (c) => {
        while (remaining-- > 0) {
          // Hot users: a third of the logins go to five users.
          const u = Math.random() < 0.33 ? users[Math.floor(Math.random() * 5)] : users[Math.floor(Math.random() * users.length)];
          let token = usual.get(u.foreign_id)!;
          if (Math.random() < 0.2) {
            token = names.filter(() => Math.random() < 0.25);
            usual.set(u.foreign_id, token);
          }
          if (running.get(u.foreign_id)) r.concurrentSameUser++;
          running.set(u.foreign_id, (running.get(u.foreign_id) ?? 0) + 1);
          const started = performance.now();
          try {
            await c.query("begin");
            // Measurement only, around the call: did every group already exist, and this
            // transaction's write counters (pending counters span transactions: take a delta).
            const { rows: pre } = await c.query<{ existed: boolean; written: string }>(
              `select (select count(*) from role where foreign_id = any ($1)) = cardinality($1) as existed,
                      (select coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)
                         from pg_stat_xact_user_tables where schemaname = 'public') as written`,
              [[...new Set(token)]],
            );
            const res = await syncRoleMembershipsByForeignId(c, u.foreign_id, token);
            if (pre[0].existed && !res.added.length && !res.removed.length) {
              const { rows } = await c.query<{ written: string; xid: string | null }>(
                `select coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) as written,
                        txid_current_if_assigned()::text as xid
                   from pg_stat_xact_user_tables where schemaname = 'public'`,
              );
              r.noops++;
              r.noopRowsWritten += Number(rows[0].written) - Number(pre[0].written);
              if (rows[0].xid) r.noopXids++;
            }
            await c.query("commit");
            r.created += res.created.length;
            r.logins++;
          } catch (e) {
            await c.query("rollback").catch(() => {});
            await unlessInterrupted(); // Ctrl-C: the cleanup ended this connection
            r.errors++;
            console.error(`   login failed: ${(e as Error).message}`);
          } finally {
            latencies.push(performance.now() - started);
            running.set(u.foreign_id, running.get(u.foreign_id)! - 1);
          }
        }
      }),
    );
  } finally {
    await Promise.all(clients.map((c) => c.end()));
  }
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))];
  const { rows } = await admin.query<{ n: number }>(
    "select count(*)::int as n from (select 1 from role_membership group by group_id, member_id having count(*) > 1) d",
  );
  return { ...r, duplicates: rows[0].n, p50: pct(50), p99: pct(99) };
}

async function main() {
  try {
    const rest = takePgOption(process.argv.slice(2), "npm run demo -- --pg 15");
    if (rest.length) throw new OneLineError(`unknown argument(s) ${rest.join(" ")}: the demo takes only --pg N`);
  } catch (e) {
    if (!(e instanceof OneLineError)) throw e;
    console.error(`rolesync demo: ${e.message}`);
    process.exit(1);
  }
  const started = Date.now();
  say("rolesync demo: Aleph's OAuth callback 500, and the fix");
  const server: Server = await startServerOrExit({ durable: true, name: "rolesync demo", dropOnInterrupt: true });
  const dbName = uniqueName("rolesync_demo");
  let exitCode = 0;
  try {
    const url = await createDatabase(server, dbName);
    await story(url, `PostgreSQL ${server.major} (${server.kind === "embedded" ? "embedded, throwaway" : "DATABASE_URL's server"})`);
    say(`\nDone in ${((Date.now() - started) / 1000).toFixed(0)} s. Next: docs/aleph.md for your database, docs/cli.md for the CLI, README.md for the clients.`);
  } catch (e) {
    await unlessInterrupted();
    console.error(`\ndemo failed: ${(e as Error).stack ?? e}`);
    exitCode = 1;
  } finally {
    await dropDatabase(server, dbName).catch(() => {});
    await server.stop();
  }
  await unlessInterrupted(); // the hook exits with 128 + the signal
  process.exit(exitCode);
}

await main();
