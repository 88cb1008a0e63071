/*
 * Starting states of real databases, each built by one function, for the
 * migration tests, the demo and the bench. They live in scripts/ because
 * scripts must not import from test/ (tests may import from scripts/). The
 * DDL is what Aleph's Alembic migrations leave behind (af9b37868cf3 and
 * later; role_membership has no key before Aleph 4.1, whose 131674bde902
 * adds role_membership_pkey).
 */
import type pg from "pg";

/*
 * Aleph's schema as its Alembic chain leaves it at 3.x (c52a1f469ac7), 4.0
 * (8adf50aadcb0) and 4.1+ (31e24765dee3), and its later revisions as their
 * SQL plus the alembic_version bump, all in one transaction, as
 * flask_migrate.upgrade() runs them in Aleph's Helm pre-upgrade hook. Facts
 * from Aleph's public migrations (../shared/context/aleph-bug.md); the SQL
 * is written here, not copied.
 */

/** Aleph's revisions from 3.x on, in order: what each does to role and role_membership. */
export const REVISIONS: [string, string][] = [
  ["c52a1f469ac7", ""],
  ["8adf50aadcb0", "alter table public.role add column last_login_at timestamp without time zone"],
  [
    "131674bde902",
    "alter table public.role_membership add constraint role_membership_pkey primary key (member_id, group_id)",
  ],
  [
    "d46fc882ec6b",
    `alter table public.role add column api_key_expires_at timestamp without time zone;
     alter table public.role add column api_key_expiration_notification_sent integer;
     create index ix_role_api_key_expires_at on public.role (api_key_expires_at)`,
  ],
  [
    "31e24765dee3",
    `alter table public.role add column api_key_digest varchar;
     create unique index ix_role_api_key_digest on public.role (api_key_digest)`,
  ],
];
export const HEAD = REVISIONS[REVISIONS.length - 1][0];

export type Release = "3.x" | "4.0" | "4.1+" | "openaleph";
/**
 * OpenAleph 5.3 (openaleph/openaleph): its chain forks from Aleph's after
 * c52a1f469ac7, and none of its own revisions (e003034f4af8 to its head
 * 575ded9400fd) touches role or role_membership: its tables are Aleph 3.x's,
 * role_membership without a key.
 */
export const OPENALEPH_HEAD = "575ded9400fd";
export const REVISION_OF: Record<Release, string> = { "3.x": "c52a1f469ac7", "4.0": "8adf50aadcb0", "4.1+": HEAD, openaleph: OPENALEPH_HEAD };

/** Aleph's role and role_membership at 3.x (Alembic c52a1f469ac7), before its later revisions. */
export const ALEPH_3X = `
create type public.role_type as enum ('user', 'group', 'system');
create table public.role (
  id serial primary key,
  created_at timestamp without time zone,
  updated_at timestamp without time zone,
  deleted_at timestamp without time zone,
  foreign_id varchar(2048) not null,
  name varchar not null,
  email varchar,
  api_key varchar,
  is_admin boolean not null,
  is_muted boolean not null,
  type public.role_type not null,
  password_digest varchar,
  reset_token varchar,
  locale varchar,
  is_blocked boolean not null,
  is_tester boolean not null,
  constraint role_foreign_id_key unique (foreign_id)
);
create table public.role_membership (
  group_id integer references public.role (id),
  member_id integer references public.role (id)
);
create table public.alembic_version (
  version_num varchar(32) not null,
  constraint alembic_version_pkc primary key (version_num)
);
insert into public.alembic_version values ('c52a1f469ac7');`;

/** Runs Aleph's pending revisions in one transaction, as `aleph upgrade` does; returns those it ran. */
export async function alephUpgrade(c: pg.Client): Promise<string[]> {
  const { rows } = await c.query<{ v: string }>("select version_num as v from public.alembic_version");
  const from = REVISIONS.findIndex(([r]) => r === rows[0].v);
  if (from < 0) throw new Error(`alembic_version ${rows[0].v} is not one of Aleph's revisions here`);
  const pending = REVISIONS.slice(from + 1);
  await c.query("begin");
  try {
    for (const [revision, sql] of pending) {
      await c.query(sql);
      await c.query("update public.alembic_version set version_num = $1", [revision]);
    }
    await c.query("commit");
  } catch (e) {
    await c.query("rollback");
    throw e;
  }
  return pending.map(([r]) => r);
}

/** Brings a 3.x schema (ALEPH_3X) to `release`: Aleph's own revisions up to and including its one, or OpenAleph's head. */
export async function bringAlephTo(c: pg.Client, release: Release): Promise<void> {
  if (release === "openaleph") {
    await c.query("update public.alembic_version set version_num = $1", [OPENALEPH_HEAD]);
    return;
  }
  await c.query("update public.alembic_version set version_num = 'c52a1f469ac7'");
  const target = REVISIONS.findIndex(([r]) => r === REVISION_OF[release]);
  for (const [revision, sql] of REVISIONS.slice(1, target + 1)) {
    if (sql) await c.query(sql);
    await c.query("update public.alembic_version set version_num = $1", [revision]);
  }
}

export const ALEPH_SCHEMA = `
create type public.role_type as enum ('user', 'group', 'system');
create table public.role (
  id serial not null,
  created_at timestamp without time zone,
  updated_at timestamp without time zone,
  deleted_at timestamp without time zone,
  foreign_id varchar(2048) not null,
  name varchar not null,
  email varchar,
  api_key varchar,
  is_admin boolean not null,
  is_muted boolean not null,
  type public.role_type not null,
  password_digest varchar,
  reset_token varchar,
  notified_at timestamp without time zone,
  locale varchar,
  is_blocked boolean not null,
  is_tester boolean not null,
  primary key (id),
  unique (foreign_id)
);
create table public.role_membership (
  group_id integer,
  member_id integer,
  foreign key (group_id) references public.role (id),
  foreign key (member_id) references public.role (id)
);`;

/**
 * One login as Aleph before 4.1 makes it, in its own transaction: delete the
 * user's rows, insert its 5 groups again (of `groups`, picked as the bench's
 * legacy tables are loaded). Without a group index the DELETE scans the
 * whole table: the writer the bench and writer-wait.ts run beside a migration.
 */
export async function alephLegacyLogin(client: pg.Client, member: number, groups = 1000): Promise<void> {
  await client.query("begin");
  await client.query("delete from public.role_membership where member_id = $1", [member]);
  await client.query(
    "insert into public.role_membership (group_id, member_id) select 1 + ($1 * 7 + k * 131) % $2, $1 from generate_series(0, 4) k",
    [member, groups],
  );
  await client.query("commit");
}

/** Aleph before 4.1: no key, nullable columns, clean data. */
export async function alephPre41(client: pg.Client, opts: { users?: number; groups?: number } = {}) {
  await client.query(ALEPH_SCHEMA);
  await seedRoles(client, opts);
}

/**
 * Aleph 4.0 as an operator has it: 3.x's tables brought to 8adf50aadcb0 by
 * Aleph's own revisions (role.last_login_at, alembic_version), no key on
 * role_membership, and the same users in groups as alephPre41. The demo's
 * database: rolesync keys it as it keys a real one.
 */
export async function aleph40(client: pg.Client, opts: { users?: number; groups?: number } = {}) {
  await client.query(ALEPH_3X);
  await bringAlephTo(client, "4.0");
  await seedRoles(client, opts);
}

/** `users` users and `groups` groups, each user in three groups, as a quiet Aleph would have it. */
async function seedRoles(client: pg.Client, opts: { users?: number; groups?: number }) {
  await client.query(
    `insert into public.role (foreign_id, name, type, is_admin, is_muted, is_blocked, is_tester, created_at, updated_at)
     select 'oidc:user-' || g, 'User ' || g, 'user'::public.role_type, false, false, false, false, now(), now()
       from generate_series(1, $1) g
     union all
     select 'group:team-' || g, 'team-' || g, 'group'::public.role_type, false, false, false, false, now(), now()
       from generate_series(1, $2) g`,
    [opts.users ?? 20, opts.groups ?? 10],
  );
  await client.query(
    `with g as (select array_agg(id order by id) as ids from public.role where type = 'group')
     insert into public.role_membership (group_id, member_id)
     select g.ids[1 + (u.id + k) % cardinality(g.ids)], u.id
       from public.role u, g, generate_series(0, least(2, cardinality(g.ids) - 1)) k
      where u.type = 'user'`,
  );
}

/** The rows a dirty database adds: what the login race and old bugs leave. */
export const DIRTY_ROWS = { duplicates: 3, triplicates: 2, nullRows: 3 };

/** Aleph before 4.1 after the race: duplicate pairs, triplicates and NULL rows. */
export async function alephPre41Dirty(client: pg.Client) {
  await alephPre41(client);
  await client.query(`
    insert into public.role_membership (group_id, member_id)
    select group_id, member_id from (select * from public.role_membership order by member_id, group_id limit 3) d;
    insert into public.role_membership (group_id, member_id)
    select group_id, member_id from (select * from public.role_membership order by member_id desc, group_id limit 2) t
    cross join generate_series(1, 2);
    insert into public.role_membership (group_id, member_id)
    values (null, (select min(id) from public.role where type = 'user')),
           ((select min(id) from public.role where type = 'group'), null),
           (null, null);`);
}

/** Aleph 4.1+: the same tables with role_membership_pkey already there. */
export async function aleph41(client: pg.Client) {
  await alephPre41(client);
  await client.query(
    "alter table public.role_membership add constraint role_membership_pkey primary key (member_id, group_id)",
  );
}

/**
 * A half-finished earlier run: an operator's (or our) CREATE UNIQUE INDEX
 * CONCURRENTLY hit the duplicates and left an INVALID role_membership_pkey.
 */
export async function interruptedIndexBuild(client: pg.Client) {
  await alephPre41Dirty(client);
  await client
    .query("create unique index concurrently role_membership_pkey on public.role_membership (member_id, group_id)")
    .then(
      () => {
        throw new Error("the build was expected to fail on the duplicates");
      },
      (e: { code?: string }) => {
        if (e.code !== "23505") throw e;
      },
    );
}

/** Everything about role_membership's and rolesync's schema and contents that a re-run could change. */
export async function fingerprint(client: pg.Client): Promise<unknown> {
  const q = async (sql: string) => (await client.query(sql)).rows;
  return {
    columns: await q(`select attname, format_type(atttypid, atttypmod) as type, attnotnull
                        from pg_attribute where attrelid = 'public.role_membership'::regclass and attnum > 0 and not attisdropped
                       order by attnum`),
    constraints: await q(`select conname, pg_get_constraintdef(oid) as def, convalidated from pg_constraint
                           where conrelid = 'public.role_membership'::regclass order by conname`),
    indexes: await q(`select indexrelid::regclass::text as name, pg_get_indexdef(indexrelid) as def, indisvalid
                        from pg_index where indrelid = 'public.role_membership'::regclass order by 1`),
    triggers: await q(`select tgname from pg_trigger where tgrelid = 'public.role_membership'::regclass and not tgisinternal`),
    // rolesync's own schema (000012) beside public: its grants, its tables and their grants, its functions.
    schemas: await q(`select nspname, nspacl::text as acl from pg_namespace
                       where nspname in ('public', 'rolesync') order by 1`),
    relations: await q(`select c.oid::regclass::text as name, c.relkind, c.relacl::text as acl
                          from pg_class c where c.relnamespace in ('public'::regnamespace, to_regnamespace('rolesync'))
                         order by 1`),
    functions: await q(`select p.oid::regprocedure::text as fn, md5(p.prosrc) as src, p.proacl::text as acl,
                               p.provolatile, p.prosecdef, p.proconfig::text as config
                          from pg_proc p where p.pronamespace in ('public'::regnamespace, to_regnamespace('rolesync'))
                         order by 1`),
    memberships: await q("select group_id, member_id from public.role_membership order by 1, 2"),
    archive: await q("select id, group_id, member_id, reason from rolesync.role_membership_removed order by id"),
    versions: await q("select member_id, version from rolesync.role_membership_version order by member_id"),
    migrations: await q("select filename, hash from rolesync.migrations order by filename"),
  };
}
