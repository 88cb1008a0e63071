/*
 * Aleph databases for the life-cycle, uninstall and OpenAleph tests: the
 * schema of each release (scripts/server/fixtures.ts, which the demo shares)
 * with users in groups, and what the login race leaves when asked.
 */
import type pg from "pg";
import { createTestDatabase, withPgClient, type TestDatabase } from "./helpers.ts";
import { ALEPH_3X, bringAlephTo, type Release } from "../scripts/server/fixtures.ts";

export {
  ALEPH_3X,
  alephUpgrade,
  bringAlephTo,
  HEAD,
  OPENALEPH_HEAD,
  REVISION_OF,
  REVISIONS,
  type Release,
} from "../scripts/server/fixtures.ts";

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
    await bringAlephTo(c, release);
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

