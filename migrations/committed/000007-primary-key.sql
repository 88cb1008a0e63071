--! Previous: sha1:d076ac347e81b8bd07841a13f69dee9892e74f96
--! Hash: sha1:2d0bc14d42bbb1f643859cffc4310db34c1f399f
--! Message: primary key
--! RunIf: conditions/no-key-yet.sql

/*
 * Attach the key: SET NOT NULL skips its scan thanks to the validated check,
 * and PRIMARY KEY USING INDEX reuses the index just built, so the ACCESS
 * EXCLUSIVE lock lasts milliseconds. Then the check goes (the columns are NOT
 * NULL now). The guard trigger stays: see 000003.
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
     and i.indexrelid in (pg_catalog.to_regclass('public.role_membership_pkey'),
                          pg_catalog.to_regclass('public.role_membership_group_id_member_id_idx'))
     and not i.indisvalid;
  if v_invalid is not null then
    raise exception using
      errcode = 'RS011',
      message = format('index %s on public.role_membership is INVALID', v_invalid),
      hint = 'An index build was interrupted. Run `npm run migrate` again: it drops the invalid index and rebuilds it.';
  end if;

  if not exists (
    select from pg_catalog.pg_constraint c
     where c.conrelid = 'public.role_membership'::regclass and c.contype = 'p')
  then
    alter table public.role_membership
      alter column group_id set not null,
      alter column member_id set not null;
    alter table public.role_membership
      add constraint role_membership_pkey primary key using index role_membership_pkey;
  end if;
end
$$;

alter table public.role_membership drop constraint if exists role_membership_not_null;
