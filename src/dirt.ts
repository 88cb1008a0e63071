/*
 * How dirty role_membership is: duplicated (group_id, member_id) pairs, the
 * surplus copies a dedupe would remove, the rows with a NULL, and the worst
 * pairs. One query text with one parameter ($1, how many worst pairs):
 * - the body of rolesync.role_membership_dirt(p_top) (migration 000015),
 *   which `rolesync check` and `rolesync dedupe --dry-run` call once
 *   rolesync is installed;
 * - run as it is before then (the dry run is what an operator wants before
 *   the first migration), as a plain read that works on a replica too.
 * test/dirt.test.ts fails when the function's body and this text differ.
 */
import type { Queryable } from "./client.ts";

export const DIRT_SQL = `
with pairs as (
  select m.group_id, m.member_id, count(*) as copies
    from public.role_membership m
   where m.group_id is not null and m.member_id is not null
   group by m.group_id, m.member_id
  having count(*) > 1
)
select (select count(*) from pairs) as duplicated_pairs,
       (select coalesce(sum(p.copies - 1), 0) from pairs p)::bigint as surplus_copies,
       (select count(*) from public.role_membership m
         where m.group_id is null or m.member_id is null) as null_rows,
       coalesce((select jsonb_agg(jsonb_build_object('groupId', w.group_id, 'memberId', w.member_id, 'copies', w.copies)
                                  order by w.copies desc, w.member_id, w.group_id)
                   from (select p.group_id, p.member_id, p.copies from pairs p
                          order by p.copies desc, p.member_id, p.group_id
                          limit $1) w),
                '[]'::jsonb) as worst
`;

export interface MembershipDirt {
  duplicatedPairs: number;
  surplusCopies: number;
  nullRows: number;
  worst: { groupId: number; memberId: number; copies: number }[];
}

/** The function where rolesync is installed, else the same text as a query. Read-only either way. */
export async function membershipDirt(c: Queryable, top = 10): Promise<MembershipDirt> {
  const { rows: f } = await c.query<{ installed: boolean }>(
    "select pg_catalog.to_regprocedure('rolesync.role_membership_dirt(integer)') is not null as installed",
  );
  const { rows } = await c.query<{ duplicated_pairs: string; surplus_copies: string; null_rows: string; worst: MembershipDirt["worst"] }>(
    f[0].installed ? "select * from rolesync.role_membership_dirt($1)" : DIRT_SQL,
    [top],
  );
  const r = rows[0];
  return {
    duplicatedPairs: Number(r.duplicated_pairs),
    surplusCopies: Number(r.surplus_copies),
    nullRows: Number(r.null_rows),
    worst: r.worst,
  };
}
