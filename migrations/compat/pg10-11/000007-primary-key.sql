--! Previous: sha1:d076ac347e81b8bd07841a13f69dee9892e74f96
--! Hash: sha1:2d0bc14d42bbb1f643859cffc4310db34c1f399f
--! Message: primary key
--! AllowInvalidHash

/*
 * PostgreSQL 10 and 11: attach rolesync's key, UNIQUE USING INDEX on the
 * index 000006 built; ACCESS EXCLUSIVE for milliseconds, no scan. The
 * columns stay nullable and the validated check role_membership_not_null
 * keeps NULL rows out (SET NOT NULL would scan the table under that lock on
 * these versions). Where the table already has a primary key (Aleph 4.1+),
 * nothing changes here. Aleph's own revision 131674bde902 can still add
 * role_membership_pkey later; the migrate hook then drops rolesync's key and
 * the check.
 */
set local lock_timeout = '1s';

do $$
declare
  v_invalid text;
begin
  select string_agg(i.indexrelid::regclass::text, ', ')
    into v_invalid
    from pg_catalog.pg_index i
   where i.indrelid = 'public.role_membership'::regclass
     and i.indexrelid in (pg_catalog.to_regclass('public.rolesync_role_membership_key'),
                          pg_catalog.to_regclass('public.role_membership_group_id_member_id_idx'))
     and not i.indisvalid;
  if v_invalid is not null then
    raise exception using
      errcode = 'RS011',
      message = format('index %s on public.role_membership is INVALID', v_invalid),
      hint = 'An index build was interrupted. Run `rolesync migrate` again: it drops the invalid index and rebuilds it.';
  end if;

  if not exists (
       select from pg_catalog.pg_constraint c
        where c.conrelid = 'public.role_membership'::regclass
          and (c.contype = 'p' or c.conname = 'rolesync_role_membership_key'))
  then
    alter table public.role_membership
      add constraint rolesync_role_membership_key unique using index rolesync_role_membership_key;
  end if;
end
$$;
