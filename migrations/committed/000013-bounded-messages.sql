--! Previous: sha1:8f5ad9bce21febeb7addb367164a01223c104a81
--! Hash: sha1:628e0cf94977610d4cdd14fb5d5b24928f2a941e
--! Message: bounded messages

/*
 * Bounded error messages. An error that lists offending items (RS002 unknown
 * groups, RS003 non-groups, RS005 unmanaged groups, 22023 empty names, 22001
 * over-long names) named every one of them: 100,000 unknown ids made a
 * 690 KB message, which PostgreSQL also writes to the server log, and which
 * the client, the CLI and Aleph's logs carry on. Now each names the first 20
 * and then "and N more"; the SQLSTATEs, the hints and the order of the
 * checks are unchanged.
 *
 * The functions are restated from their latest migrations (000012 for
 * sync_role_memberships, 000008 for sync_role_memberships_by_foreign_id)
 * with only the message construction changed, and left() for starts_with()
 * (PostgreSQL 11+) so that one body serves 10 and later.
 * sync_oauth_login (000009) lists nothing of its own: its group-list errors
 * are by_foreign_id's. CREATE OR REPLACE resets a function's SET options:
 * search_path is in each definition, plan_cache_mode (12+) is set again below.
 * No locks beyond the catalog's: logins go on.
 */

/*
 * "a, b, c" for at most max_items items, then ", and N more"; each item cut
 * to 200 characters. Why: an error message names what the caller got wrong,
 * and must stay small however long the list is, since it is logged.
 * NULL for an empty list, so that callers can test the result. Immutable:
 * it depends on its arguments only. The application role runs it, on the
 * error path of the sync functions, which run as their caller.
 */
create or replace function rolesync.format_list(items text[], max_items integer default 20)
returns text
language sql
immutable
security invoker
set search_path = pg_catalog, pg_temp
as $$
  select case when s.total > greatest(max_items, 0)
              then coalesce(s.shown || ', ', '') || 'and ' || (s.total - greatest(max_items, 0))::text || ' more'
              else s.shown end
    from (select count(*) as total,
                 string_agg(case when length(u.item) > 200 then left(u.item, 199) || '…' else u.item end,
                            ', ' order by u.i) filter (where u.i <= max_items) as shown
            from unnest(items) with ordinality as u(item, i)) s
$$;
comment on function rolesync.format_list(text[], integer) is
  'The first max_items (20) items of a list for an error message, then "and N more"; NULL for an empty list.';
revoke all on function rolesync.format_list(text[], integer) from public;
grant execute on function rolesync.format_list(text[], integer) to :ROLESYNC_APP_ROLE;

/*
 * As in 000012 (000001's body, written for PostgreSQL 10 and later), with
 * RS002, RS003 and RS005 naming at most 20 ids. Volatile: it writes.
 */
create or replace function public.sync_role_memberships(
  role_id integer,
  group_ids integer[],
  managed_prefix text default null,
  out added integer[],
  out removed integer[]
)
language plpgsql
volatile
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
  v_valid integer[];
  v_current integer[];
  v_member_exists boolean;
  v_unknown integer[];
  v_not_groups text;
  v_unmanaged text;
begin
  if sync_role_memberships.role_id is null then
    raise exception using errcode = '22004',
      message = 'sync_role_memberships: role_id must not be null';
  end if;
  if group_ids is null then
    raise exception using errcode = '22004',
      message = 'sync_role_memberships: group_ids must not be null',
      hint = 'Pass an empty array to remove every membership.';
  end if;
  if array_ndims(group_ids) > 1 then
    raise exception using errcode = '22023',
      message = 'sync_role_memberships: group_ids must be a one-dimensional array';
  end if;
  if array_position(group_ids, null) is not null then
    raise exception using errcode = '22004',
      message = format('sync_role_memberships: group_ids must not contain NULL (element %s is NULL)',
                       array_position(group_ids, null));
  end if;
  if sync_role_memberships.role_id = any (group_ids) then
    raise exception using errcode = 'RS004',
      message = format('role %s cannot be a member of itself', sync_role_memberships.role_id),
      hint = 'Remove the member''s own id from group_ids.';
  end if;

  -- The member lock, held until commit (see the comment above the function).
  perform pg_advisory_xact_lock(1919904869, sync_role_memberships.role_id);

  -- Under snapshot isolation the read below would use the transaction's
  -- snapshot, which may predate the previous holder's commit. Locking the
  -- member's version row fails with 40001 in exactly that case.
  if current_setting('transaction_isolation') <> 'read committed' then
    insert into rolesync.role_membership_version as v (member_id)
    values (sync_role_memberships.role_id)
    on conflict (member_id) do update set version = v.version where false;
  end if;

  -- One statement, one fresh snapshot, two index lookups: all that a login
  -- which changes nothing needs. v_valid: the listed ids that are live groups
  -- under the prefix, plus the member if it is live. v_current: the member's
  -- groups under the prefix. Sets are compared by containment, so order and
  -- repeats in group_ids do not matter.
  select array(select r.id from public.role r
                where r.id = any (group_ids || sync_role_memberships.role_id)
                  and r.deleted_at is null
                  and (r.id = sync_role_memberships.role_id
                       or (r.type = 'group'
                           and (managed_prefix is null or left(r.foreign_id, length(managed_prefix)) = managed_prefix)))),
         array(select m.group_id from public.role_membership m
                where m.member_id = sync_role_memberships.role_id
                  and (managed_prefix is null
                       or exists (select from public.role r
                                   where r.id = m.group_id and left(r.foreign_id, length(managed_prefix)) = managed_prefix)))
    into v_valid, v_current;

  if not (sync_role_memberships.role_id = any (v_valid) and v_valid @> group_ids) then
    -- Something is wrong: find what, in the documented order, and say it.
    with t as (select distinct g.id from unnest(group_ids) as g(id))
    select exists (select from public.role r where r.id = sync_role_memberships.role_id),
           array(select t.id from t left join public.role r on r.id = t.id
                  where r.id is null or r.deleted_at is not null
                  order by t.id),
           rolesync.format_list(array(
             select format('%s (%s)', t.id, r.type)
               from t join public.role r on r.id = t.id
              where r.deleted_at is null and r.type <> 'group'
              order by t.id)),
           rolesync.format_list(array(
             select format('%s (%s)', t.id, r.foreign_id)
               from t join public.role r on r.id = t.id
              where r.deleted_at is null and r.type = 'group'
                and managed_prefix is not null and left(r.foreign_id, length(managed_prefix)) <> managed_prefix
              order by t.id))
      into v_member_exists, v_unknown, v_not_groups, v_unmanaged;
    if not sync_role_memberships.role_id = any (v_valid) then
      raise exception using errcode = 'RS001',
        message = format('member role %s %s', sync_role_memberships.role_id,
                         case when v_member_exists then 'is soft-deleted' else 'does not exist' end),
        hint = 'Sync memberships only for roles that exist and have no deleted_at.';
    end if;
    if cardinality(v_unknown) > 0 then
      raise exception using errcode = 'RS002',
        message = format('unknown or soft-deleted groups: %s', rolesync.format_list(v_unknown::text[])),
        hint = 'Create the group roles first, or leave these ids out.';
    end if;
    if v_not_groups is not null then
      raise exception using errcode = 'RS003',
        message = format('roles are not groups: %s', v_not_groups),
        hint = 'group_ids may only name roles of type ''group''.';
    end if;
    raise exception using errcode = 'RS005',
      message = format('groups outside the managed prefix %L: %s', managed_prefix, v_unmanaged),
      hint = 'Only groups whose foreign_id starts with managed_prefix can be synced with it; pass NULL to manage every group.';
  end if;

  if v_current @> group_ids and group_ids @> v_current then
    added := '{}';
    removed := '{}';
    return; -- nothing to change, so nothing is written
  end if;

  with deleted as (
    delete from public.role_membership m
     where m.member_id = sync_role_memberships.role_id
       and m.group_id = any (v_current)
       and m.group_id <> all (group_ids)
    returning m.group_id
  ), inserted as (
    -- The guard trigger puts every inserter on the member lock, so the row cannot
    -- have appeared since the read; if the trigger is disabled, skip it anyway.
    insert into public.role_membership (group_id, member_id)
    select distinct t.id, sync_role_memberships.role_id from unnest(group_ids) as t(id)
     where t.id <> all (v_current)
    on conflict do nothing
    returning group_id
  ), bumped as (
    insert into rolesync.role_membership_version as v (member_id, version, changed_at)
    values (sync_role_memberships.role_id, 1, now())
    on conflict (member_id)
    do update set version = v.version + 1, changed_at = excluded.changed_at
  )
  select array(select distinct d.group_id from deleted d order by d.group_id),
         array(select i.group_id from inserted i order by i.group_id)
    into removed, added;
end;
$$;


/*
 * As in 000008, with 22023, RS005, 22001 and RS003 naming at most 20 names.
 * Each list is built on every call (empty on a good one) and formatted only
 * to raise. left() for starts_with(), as 000008's PostgreSQL 10 and 11
 * version has it; plan_cache_mode is set below. Volatile: it writes.
 */
create or replace function public.sync_role_memberships_by_foreign_id(
  member_foreign_id text,
  group_foreign_ids text[],
  managed_prefix text default 'group:',
  out added integer[],
  out removed integer[],
  out created integer[],
  out skipped integer[]
)
language plpgsql
volatile
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
  v_names text[];
  v_bad text[];
  v_max_length integer;
  v_member integer;
  v_member_deleted_at timestamp;
  v_target integer[];
  v_not_groups text[];
begin
  if member_foreign_id is null or group_foreign_ids is null or managed_prefix is null then
    raise exception using errcode = '22004',
      message = format('sync_role_memberships_by_foreign_id: %s must not be null',
                       case when member_foreign_id is null then 'member_foreign_id'
                            when group_foreign_ids is null then 'group_foreign_ids'
                            else 'managed_prefix' end),
      hint = 'Pass an empty array to remove every managed membership; pass '''' to manage every group.';
  end if;
  if member_foreign_id = '' then
    raise exception using errcode = '22023',
      message = 'sync_role_memberships_by_foreign_id: member_foreign_id must not be empty';
  end if;
  if array_ndims(group_foreign_ids) > 1 then
    raise exception using errcode = '22023',
      message = 'sync_role_memberships_by_foreign_id: group_foreign_ids must be a one-dimensional array';
  end if;
  if array_position(group_foreign_ids, null) is not null then
    raise exception using errcode = '22004',
      message = format('sync_role_memberships_by_foreign_id: group_foreign_ids must not contain NULL (element %s is NULL)',
                       array_position(group_foreign_ids, null));
  end if;

  v_names := array(select distinct n from unnest(group_foreign_ids) as n order by n);

  v_bad := array(select format('%L', u.n) from unnest(v_names) with ordinality as u(n, i)
                  where u.n = '' or u.n = managed_prefix order by u.i);
  if cardinality(v_bad) > 0 then
    raise exception using errcode = '22023',
      message = format('empty group names: %s', rolesync.format_list(v_bad)),
      hint = format('A group foreign id is the prefix %L followed by the group''s name.', managed_prefix);
  end if;
  v_bad := array(select format('%L', u.n) from unnest(v_names) with ordinality as u(n, i)
                  where left(u.n, length(managed_prefix)) <> managed_prefix order by u.i);
  if cardinality(v_bad) > 0 then
    raise exception using errcode = 'RS005',
      message = format('groups outside the managed prefix %L: %s', managed_prefix, rolesync.format_list(v_bad)),
      hint = 'Name groups as the prefix followed by their name, or pass the prefix they use.';
  end if;
  -- The limit is role.foreign_id's own: varchar(2048) in Aleph.
  select a.atttypmod - 4 into v_max_length
    from pg_catalog.pg_attribute a
   where a.attrelid = 'public.role'::regclass and a.attname = 'foreign_id' and a.atttypmod > 4;
  v_bad := array(select format('%s… (%s characters)', left(u.n, 40), length(u.n))
                   from unnest(v_names) with ordinality as u(n, i)
                  where length(u.n) > v_max_length order by u.i);
  if cardinality(v_bad) > 0 then
    raise exception using errcode = '22001',
      message = format('group foreign ids longer than %s characters: %s', v_max_length, rolesync.format_list(v_bad)),
      hint = 'role.foreign_id cannot hold them; shorten the names at the identity provider.';
  end if;
  if member_foreign_id = any (v_names) then
    raise exception using errcode = 'RS004',
      message = format('role %L cannot be a member of itself', member_foreign_id),
      hint = 'Remove the member''s own foreign id from group_foreign_ids.';
  end if;

  select r.id, r.deleted_at into v_member, v_member_deleted_at
    from public.role r where r.foreign_id = member_foreign_id;
  if v_member is null or v_member_deleted_at is not null then
    raise exception using errcode = 'RS001',
      message = format('member role %L %s', member_foreign_id,
                       case when v_member is null then 'does not exist' else 'is soft-deleted' end),
      hint = 'Create the member''s role first (Aleph does, in handle_oauth); soft-deleted roles are not synced.';
  end if;

  -- Create the missing groups; a concurrent creator's row makes ours a no-op.
  with new_groups as (
    insert into public.role (foreign_id, name, type, is_admin, is_muted, is_blocked, is_tester,
                             created_at, updated_at)
    select n, substr(n, length(managed_prefix) + 1), 'group', false, false, false, false,
           now() at time zone 'utc', now() at time zone 'utc'
      from unnest(v_names) as n
     where not exists (select from public.role r where r.foreign_id = n)
     order by n
    on conflict (foreign_id) do nothing
    returning id
  )
  select array(select g.id from new_groups g order by g.id) into created;

  -- A fresh snapshot: it sees the groups concurrent creators committed.
  select array(select r.id from public.role r
                where r.foreign_id = any (v_names) and r.deleted_at is null and r.type = 'group'
                order by r.id),
         array(select r.id from public.role r
                where r.foreign_id = any (v_names) and r.deleted_at is not null
                order by r.id),
         array(select format('%L (%s)', r.foreign_id, r.type)
                 from public.role r
                where r.foreign_id = any (v_names) and r.deleted_at is null and r.type <> 'group'
                order by r.foreign_id)
    into v_target, skipped, v_not_groups;
  if cardinality(v_not_groups) > 0 then
    raise exception using errcode = 'RS003',
      message = format('names belong to roles that are not groups: %s', rolesync.format_list(v_not_groups)),
      hint = 'A user or system role has this foreign id; rename the group at the identity provider.';
  end if;

  select s.added, s.removed into added, removed
    from public.sync_role_memberships(v_member, v_target, managed_prefix) s;
end;
$$;

/*
 * Plan each statement of both syncs once per session, as 000008 and 000012
 * set it: plan_cache_mode is PostgreSQL 12+; on 10 and 11 the functions plan
 * as those versions do.
 */
do $$
begin
  if pg_catalog.current_setting('server_version_num')::integer >= 120000 then
    alter function public.sync_role_memberships(integer, integer[], text) set plan_cache_mode = force_generic_plan;
    alter function public.sync_role_memberships_by_foreign_id(text, text[], text) set plan_cache_mode = force_generic_plan;
  end if;
end
$$;
