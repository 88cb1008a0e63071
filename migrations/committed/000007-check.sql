--! Previous: sha1:268157d6c8c9d4f5d2d7807b527d8a99a1f4ab83
--! Hash: sha1:8f49ed130c80cded7c5ff150969a4e55ebe15c55
--! Message: check

/*
 * What an operator (or a cron job, or CI) asks of role_membership: is it
 * keyed, is it clean, are its indexes usable, does it point at deleted roles.
 * One row per check: `ok` is false when something needs doing, `count` is
 * how many (NULL where nothing is counted), and `hint` says what to do. Stable: it only reads. Owner-only, like the dedupe.
 */
create or replace function public.role_membership_check()
returns table (check_name text, ok boolean, count bigint, detail text, hint text)
language plpgsql
stable
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
  v_keyed boolean;
  v_copies bigint := 0;
  v_null_rows bigint := 0;
  v_invalid text;
  v_count bigint;
begin
  v_keyed := exists (
    select from pg_catalog.pg_constraint c
     where c.conrelid = 'public.role_membership'::regclass and c.contype = 'p');
  check_name := 'primary_key';
  ok := v_keyed;
  count := null;
  detail := case when v_keyed then 'role_membership_pkey (member_id, group_id) is in place'
                 else 'role_membership has no primary key: concurrent logins can store a pair twice' end;
  hint := case when not v_keyed then 'Run `rolesync migrate`: it cleans the table and adds the key online.' end;
  return next;

  -- Without the key, duplicates and NULL rows need a scan; with it there can be none.
  if not v_keyed then
    select coalesce(sum(d.copies - 1), 0) into v_copies from public.role_membership_duplicates d;
    select count(*) into v_null_rows from public.role_membership m
     where m.group_id is null or m.member_id is null;
  end if;
  check_name := 'duplicates';
  ok := v_copies = 0;
  count := v_copies;
  detail := format('%s surplus cop%s of stored pairs', v_copies, case when v_copies = 1 then 'y' else 'ies' end);
  hint := case when v_copies > 0 then 'Run `rolesync migrate` (or `rolesync dedupe`): copies are archived in role_membership_removed.' end;
  return next;

  check_name := 'null_rows';
  ok := v_null_rows = 0;
  count := v_null_rows;
  detail := format('%s row(s) with a NULL group_id or member_id', v_null_rows);
  hint := case when v_null_rows > 0 then 'Run `rolesync migrate` (or `rolesync dedupe`): NULL rows are archived in role_membership_removed.' end;
  return next;

  select string_agg(i.indexrelid::regclass::text, ', ' order by i.indexrelid::regclass::text), count(*)
    into v_invalid, v_count
    from pg_catalog.pg_index i
   where i.indrelid in ('public.role_membership'::regclass, 'public.role'::regclass)
     and not (i.indisvalid and i.indisready);
  check_name := 'invalid_indexes';
  ok := v_count = 0;
  count := v_count;
  detail := coalesce('INVALID: ' || v_invalid, 'every index on role and role_membership is valid');
  hint := case when v_count > 0 then 'An index build was interrupted. `rolesync migrate` rebuilds its own; for others: DROP INDEX CONCURRENTLY, then build again.' end;
  return next;

  select count(*) into v_count
    from public.role_membership m
    join public.role r on r.id = m.member_id
   where r.deleted_at is not null;
  check_name := 'soft_deleted_members';
  ok := v_count = 0;
  count := v_count;
  detail := format('%s membership(s) of soft-deleted members', v_count);
  hint := case when v_count > 0 then 'They grant nothing but linger: DELETE FROM role_membership m USING role r WHERE r.id = m.member_id AND r.deleted_at IS NOT NULL.' end;
  return next;

  select count(*) into v_count
    from public.role_membership m
    join public.role r on r.id = m.group_id
   where r.deleted_at is not null;
  check_name := 'soft_deleted_groups';
  ok := v_count = 0;
  count := v_count;
  detail := format('%s membership(s) in soft-deleted groups', v_count);
  hint := case when v_count > 0 then 'Each member''s next sync removes them; to remove them now: DELETE FROM role_membership m USING role r WHERE r.id = m.group_id AND r.deleted_at IS NOT NULL.' end;
  return next;
end;
$$;
comment on function public.role_membership_check() is
  'Health of role_membership for operators: key, duplicates, NULL rows, invalid indexes, memberships of soft-deleted roles.';
revoke all on function public.role_membership_check() from public;
