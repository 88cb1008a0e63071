--! Previous: sha1:ca7d6e2dd6fda6d85c0c391ea5c2b566f7d3d80f
--! Hash: sha1:2ea9a9c90c3fb2a5bf91380de545a9e478906795
--! Message: membership dirt

/*
 * How dirty role_membership is, for `rolesync check` and `rolesync dedupe
 * --dry-run`: the duplicated (group_id, member_id) pairs, the surplus copies
 * a dedupe would remove, the rows with a NULL, and the p_top worst pairs
 * (as JSON: groupId, memberId, copies). Until now the CLI held this SQL
 * three times over. The body is src/dirt.ts's DIRT_SQL, which the CLI also
 * runs as a plain query before rolesync is installed (the dry run an
 * operator wants before the first migration); test/dirt.test.ts fails when
 * the two differ. One pass over role_membership for the pairs (the CTE is
 * read three times, so computed once), one for the NULL rows.
 * Stable: it only reads. For the operator, not the application: no grant.
 */
create or replace function rolesync.role_membership_dirt(p_top integer default 10)
returns table (duplicated_pairs bigint, surplus_copies bigint, null_rows bigint, worst jsonb)
language sql
stable
security invoker
set search_path = pg_catalog, pg_temp
as $body$
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
$body$;
revoke all on function rolesync.role_membership_dirt(integer) from public;
