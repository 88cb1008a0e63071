/*
 * Runs before pending migrations. An interrupted CREATE INDEX CONCURRENTLY
 * leaves an INVALID index behind, and CREATE INDEX ... IF NOT EXISTS would
 * then skip it; worse, an invalid unique index still rejects inserts. So drop
 * ours when invalid and let the migration build it afresh. DROP INDEX takes
 * ACCESS EXCLUSIVE for a moment; it waits at most lock_timeout and the runner
 * retries. Other indexes are reported by `rolesync check`, never dropped.
 */
do $$
declare
  v_index regclass;
begin
  perform pg_catalog.set_config('lock_timeout', '1s', true);
  for v_index in
    select i.indexrelid::regclass
      from pg_catalog.pg_index i
     where i.indrelid = pg_catalog.to_regclass('public.role_membership')
       and i.indexrelid in (pg_catalog.to_regclass('public.role_membership_pkey'),
                            pg_catalog.to_regclass('public.role_membership_group_id_member_id_idx'),
                            pg_catalog.to_regclass('public.rolesync_role_membership_key'))
       and not i.indisvalid
  loop
    raise notice 'dropping INVALID index % left by an interrupted build', v_index;
    if v_index = pg_catalog.to_regclass('public.role_membership_pkey') then
      drop index public.role_membership_pkey;
    elsif v_index = pg_catalog.to_regclass('public.rolesync_role_membership_key') then
      drop index public.rolesync_role_membership_key;
    else
      drop index public.role_membership_group_id_member_id_idx;
    end if;
  end loop;
end
$$;
