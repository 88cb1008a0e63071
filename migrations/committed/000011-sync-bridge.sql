--! Previous: sha1:5de566052b0ff402d579be60bfcb14c54fc22561
--! Hash: sha1:f30e2a6db218f543b0bcc4065d51cae5e36ce44d
--! Message: sync bridge

/*
 * A bridge for 000012, which moves rolesync.role_membership_version out of
 * public. sync_role_memberships names that table, and a call already inside
 * the function when the move commits re-plans its next statement: with the
 * schema-qualified public name it would fail with 42P01 (one login per busy
 * connection). So, for the moment of the move, the function finds the table
 * through its search_path, rolesync first, then public: a call that started
 * before the move finishes after it. 000012 restates the function with the
 * qualified name again.
 *
 * Otherwise the body is 000001's (that comment says why it is race-free and
 * what it raises), written for PostgreSQL 10 and later: left() for the prefix
 * test (starts_with is 11+), and plan_cache_mode (12+) set below where the
 * server has it. Volatile: it writes.
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
-- pg_catalog first: only the version table is found through the schemas after it.
set search_path = pg_catalog, rolesync, public, pg_temp
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

  perform pg_advisory_xact_lock(1919904869, sync_role_memberships.role_id);

  if current_setting('transaction_isolation') <> 'read committed' then
    insert into role_membership_version as v (member_id)
    values (sync_role_memberships.role_id)
    on conflict (member_id) do update set version = v.version where false;
  end if;

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
    with t as (select distinct g.id from unnest(group_ids) as g(id))
    select exists (select from public.role r where r.id = sync_role_memberships.role_id),
           array(select t.id from t left join public.role r on r.id = t.id
                  where r.id is null or r.deleted_at is not null
                  order by t.id),
           (select string_agg(format('%s (%s)', t.id, r.type), ', ' order by t.id)
              from t join public.role r on r.id = t.id
             where r.deleted_at is null and r.type <> 'group'),
           (select string_agg(format('%s (%s)', t.id, r.foreign_id), ', ' order by t.id)
              from t join public.role r on r.id = t.id
             where r.deleted_at is null and r.type = 'group'
               and managed_prefix is not null and left(r.foreign_id, length(managed_prefix)) <> managed_prefix)
      into v_member_exists, v_unknown, v_not_groups, v_unmanaged;
    if not sync_role_memberships.role_id = any (v_valid) then
      raise exception using errcode = 'RS001',
        message = format('member role %s %s', sync_role_memberships.role_id,
                         case when v_member_exists then 'is soft-deleted' else 'does not exist' end),
        hint = 'Sync memberships only for roles that exist and have no deleted_at.';
    end if;
    if cardinality(v_unknown) > 0 then
      raise exception using errcode = 'RS002',
        message = format('unknown or soft-deleted groups: %s', array_to_string(v_unknown, ', ')),
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
    return;
  end if;

  with deleted as (
    delete from public.role_membership m
     where m.member_id = sync_role_memberships.role_id
       and m.group_id = any (v_current)
       and m.group_id <> all (group_ids)
    returning m.group_id
  ), inserted as (
    insert into public.role_membership (group_id, member_id)
    select distinct t.id, sync_role_memberships.role_id from unnest(group_ids) as t(id)
     where t.id <> all (v_current)
    on conflict do nothing
    returning group_id
  ), bumped as (
    insert into role_membership_version as v (member_id, version, changed_at)
    values (sync_role_memberships.role_id, 1, now())
    on conflict (member_id)
    do update set version = v.version + 1, changed_at = excluded.changed_at
  )
  select array(select distinct d.group_id from deleted d order by d.group_id),
         array(select i.group_id from inserted i order by i.group_id)
    into removed, added;
end;
$$;

do $$
begin
  if pg_catalog.current_setting('server_version_num')::integer >= 120000 then
    alter function public.sync_role_memberships(integer, integer[], text) set plan_cache_mode = force_generic_plan;
  end if;
end
$$;
