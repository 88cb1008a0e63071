/*
 * Aleph's schema as its Alembic chain leaves it at 3.x (c52a1f469ac7), 4.0
 * (8adf50aadcb0) and 4.1+ (31e24765dee3), and its later revisions as their
 * SQL plus the alembic_version bump, all in one transaction, as
 * flask_migrate.upgrade() runs them in Aleph's Helm pre-upgrade hook. Facts
 * from Aleph's public migrations (../shared/context/aleph-bug.md); the SQL
 * is written here, not copied. Shared by the life-cycle and uninstall tests.
 */
import type pg from "pg";
import { createTestDatabase, withPgClient, type TestDatabase } from "./helpers.ts";

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

/** An Aleph database at `release`, with users in groups; `dirty` adds what the login race leaves. */
export async function alephDatabase(release: Release, opts: { dirty?: boolean } = {}): Promise<TestDatabase> {
  const db = await createTestDatabase({ empty: true });
  await withPgClient(db.url, async (c) => {
    await c.query(ALEPH_3X);
    await c.query(
      `insert into public.role (foreign_id, name, type, is_admin, is_muted, is_blocked, is_tester, created_at, updated_at)
       select 'oidc:user-' || g, 'User ' || g, 'user'::public.role_type, false, false, false, false, now(), now() from generate_series(1, 20) g
       union all
       select 'group:team-' || g, 'team-' || g, 'group'::public.role_type, false, false, false, false, now(), now() from generate_series(1, 6) g`,
    );
    await c.query(
      `insert into public.role_membership (group_id, member_id)
       select g.id, u.id from public.role u join public.role g on g.type = 'group' and (u.id + g.id) % 3 = 0
        where u.type = 'user'`,
    );
    if (opts.dirty) {
      await c.query(`
        insert into public.role_membership (group_id, member_id)
        select group_id, member_id from (select * from public.role_membership order by member_id, group_id limit 4) d;
        insert into public.role_membership (group_id, member_id)
        values (null, (select min(id) from public.role where type = 'user')), (null, null);`);
    }
    if (release === "openaleph") {
      await c.query("update public.alembic_version set version_num = $1", [OPENALEPH_HEAD]);
      return;
    }
    // Bring the schema to the release: Aleph's own revisions, up to and including its revision.
    await c.query("update public.alembic_version set version_num = 'c52a1f469ac7'");
    const target = REVISIONS.findIndex(([r]) => r === REVISION_OF[release]);
    for (const [revision, sql] of REVISIONS.slice(1, target + 1)) {
      if (sql) await c.query(sql);
      await c.query("update public.alembic_version set version_num = $1", [revision]);
    }
  });
  return db;
}

export interface Keys {
  /** Unique indexes on exactly (member_id, group_id), with the constraint each backs. */
  unique: { index: string; constraint: string | null; type: string | null }[];
  primaryKey: string | null;
  notNull: boolean;
}

export async function keys(c: pg.Client): Promise<Keys> {
  const { rows: unique } = await c.query<{ index: string; constraint: string | null; type: string | null }>(
    `select i.indexrelid::regclass::text as index, con.conname::text as constraint, con.contype::text as type
       from pg_index i
       left join pg_constraint con on con.conindid = i.indexrelid and con.conrelid = i.indrelid
      where i.indrelid = 'public.role_membership'::regclass and i.indisunique and i.indisvalid
        and i.indnatts = 2
        and i.indkey[0] = (select attnum from pg_attribute where attrelid = i.indrelid and attname = 'member_id')
        and i.indkey[1] = (select attnum from pg_attribute where attrelid = i.indrelid and attname = 'group_id')
      order by 1`,
  );
  const { rows: pk } = await c.query<{ name: string | null; notnull: boolean }>(
    `select (select conname::text from pg_constraint where conrelid = 'public.role_membership'::regclass and contype = 'p') as name,
            (select bool_and(attnotnull) from pg_attribute
              where attrelid = 'public.role_membership'::regclass and attname in ('member_id', 'group_id')) as notnull`,
  );
  return { unique, primaryKey: pk[0].name, notNull: pk[0].notnull };
}

export const ROLESYNC_KEY = { index: "rolesync_role_membership_key", constraint: "rolesync_role_membership_key", type: "u" };
export const ALEPH_KEY = { index: "role_membership_pkey", constraint: "role_membership_pkey", type: "p" };

