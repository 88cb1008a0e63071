/*
 * How long a login waits while `rolesync migrate` adopts a big pre-4.1
 * table: the longest wait of one writer before the migration and during it,
 * on the harness's server (ROLESYNC_PG_MAJOR picks the embedded major). The
 * writer, every 20 ms, either inserts one row per transaction (`--login
 * insert`, the default) or does Aleph's whole login before 4.1 for one user:
 * delete the user's rows, insert them again (`--login legacy`, whose DELETE
 * scans the unindexed table until the group index exists).
 *
 *   node --import tsx scripts/bench/writer-wait.ts [--rows 1000000] [--login insert|legacy]
 *
 * PGOPTIONS reaches every connection, the migration's too: with
 * PGOPTIONS='-c max_parallel_maintenance_workers=0' the index builds leave
 * the other cores to the writer (docs/scaling.md has both runs).
 *
 * The table is Aleph 4.0's role_membership (no key, nullable columns, no
 * index: the legacy login's DELETE is a sequential scan), 1% of its pairs
 * duplicated and 1,000 NULL rows added; Aleph's Alembic ledger says 4.0, so
 * rolesync keys it under its own name. docs/benchmarks.md records the
 * results.
 */
import pg from "pg";
import { setTimeout as sleep } from "node:timers/promises";
import { createDatabase, dropDatabase, startServerOrExit, uniqueName, withClient } from "../server/db.ts";
import { runMigrations } from "../../src/migrate.ts";
import { alephLegacyLogin } from "../server/fixtures.ts";
import { unlessInterrupted } from "../server/embedded.ts";

/** Aleph 4.0's role and role_membership (Alembic 8adf50aadcb0), with its ledger, as an operator's database has them. */
const ALEPH_40 = `
create type public.role_type as enum ('user', 'group', 'system');
create table public.role (
  id serial primary key, created_at timestamp, updated_at timestamp, deleted_at timestamp,
  foreign_id varchar(2048) not null constraint role_foreign_id_key unique, name varchar not null,
  email varchar, api_key varchar, is_admin boolean not null, is_muted boolean not null,
  type public.role_type not null, password_digest varchar, reset_token varchar, locale varchar,
  is_blocked boolean not null, is_tester boolean not null, last_login_at timestamp);
create table public.role_membership (group_id integer, member_id integer);
create table public.alembic_version (version_num varchar(32) not null constraint alembic_version_pkc primary key);
insert into public.alembic_version values ('8adf50aadcb0');`;

const USAGE = "usage: writer-wait.ts [--rows N] [--login insert|legacy]";
const args = process.argv.slice(2);
let rows = 1_000_000;
let login: "insert" | "legacy" = "insert";
for (let i = 0; i < args.length; i += 2) {
  const [flag, value] = [args[i], args[i + 1]];
  if (flag === "--rows" && value !== undefined && /^\d+$/.test(value) && Number(value) >= 5) rows = Number(value);
  else if (flag === "--login" && (value === "insert" || value === "legacy")) login = value;
  else {
    console.error(
      flag === "--rows"
        ? `[writer-wait] --rows must be a whole number of at least 5, not ${JSON.stringify(value ?? "")}; ${USAGE}`
        : flag === "--login"
          ? `[writer-wait] --login is insert (one row per transaction) or legacy (Aleph's login before 4.1: delete the user's rows, insert them again), not ${JSON.stringify(value ?? "")}`
          : `[writer-wait] unknown argument ${flag}; ${USAGE}`,
    );
    process.exit(2);
  }
}
const users = Math.ceil(rows / 5);
const log = (s: string) => console.log(`[writer-wait] ${s}`);

const server = await startServerOrExit({ durable: true, log, name: "[writer-wait]", dropOnInterrupt: true });
const name = uniqueName("rolesync_writer_wait");
let exitCode = 0;
try {
  const url = await createDatabase(server, name);
  log(`PostgreSQL ${server.major}: loading ${(users * 5).toLocaleString("en")} memberships, 1% duplicated, and 1,000 NULL rows`);
  await withClient(url, async (c) => {
    await c.query(ALEPH_40);
    await c.query(
      `insert into public.role (foreign_id, name, type, is_admin, is_muted, is_blocked, is_tester)
       select 'group:g' || g, 'g' || g, 'group'::public.role_type, false, false, false, false from generate_series(1, 1000) g
       union all
       select 'oidc:u' || u, 'u' || u, 'user'::public.role_type, false, false, false, false from generate_series(1, $1) u`,
      [users],
    );
    await c.query(
      `insert into public.role_membership (group_id, member_id)
       select 1 + (u * 7 + k * 131) % 1000, 1000 + u from generate_series(1, $1) u, generate_series(0, 4) k`,
      [users],
    );
    await c.query("insert into public.role_membership select group_id, member_id from public.role_membership where member_id % 100 = 0");
    await c.query(
      `insert into public.role_membership
       select null, 1000 + g from generate_series(1, 500) g union all select g, null from generate_series(1, 500) g`,
    );
    await c.query(`alter table public.role_membership
                     add constraint role_membership_group_id_fkey foreign key (group_id) references public.role (id) not valid,
                     add constraint role_membership_member_id_fkey foreign key (member_id) references public.role (id) not valid`);
    await c.query("vacuum analyze");
    await c.query("checkpoint");
  });

  let phase = "before" as "before" | "during" | "done";
  const waits = { before: [] as number[], during: [] as number[] };
  const writer = (async () => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    const member = 1000 + users;
    for (let i = 0; phase !== "done"; i++) {
      const t = performance.now();
      const at = phase;
      if (login === "legacy") await alephLegacyLogin(c, member, 1000);
      else {
        await c.query("begin");
        await c.query("insert into public.role_membership (group_id, member_id) values ($1, $2)", [1 + (i % 1000), member]);
        await c.query("commit");
      }
      waits[at].push(performance.now() - t);
      await sleep(20);
    }
    await c.end();
  })();
  await sleep(5000);
  phase = "during";
  const t0 = performance.now();
  const result = await runMigrations({ databaseUrl: url });
  const seconds = (performance.now() - t0) / 1000;
  phase = "done";
  await writer;
  const max = (w: number[]) => Math.max(...w);
  // PostgreSQL 10 has no parallel index builds, and no such setting.
  const parallel = await withClient(
    url,
    async (c) => (await c.query("select coalesce(current_setting('max_parallel_maintenance_workers', true), 'none') as n")).rows[0].n,
  );
  log(
    `PostgreSQL ${server.major}, ${(users * 5).toLocaleString("en")} rows, ${login} writer, ` +
      `max_parallel_maintenance_workers ${parallel}: migration ${seconds.toFixed(1)} s ` +
      `(${result.executed.length} migrations); the writer's longest wait: before ${max(waits.before).toFixed(0)} ms ` +
      `(${waits.before.length} writes), during ${max(waits.during).toFixed(0)} ms (${waits.during.length} writes), ` +
      `added ${(max(waits.during) - max(waits.before)).toFixed(0)} ms`,
  );
} catch (e) {
  await unlessInterrupted();
  console.error(`[writer-wait] failed: ${(e as Error).stack ?? e}`);
  exitCode = 1;
} finally {
  await dropDatabase(server, name).catch(() => {});
  await server.stop();
}
await unlessInterrupted(); // the hook exits with 128 + the signal
process.exit(exitCode);
