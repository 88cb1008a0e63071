--! Previous: sha1:628e0cf94977610d4cdd14fb5d5b24928f2a941e
--! Hash: sha1:ca7d6e2dd6fda6d85c0c391ea5c2b566f7d3d80f
--! Message: faster no-op sync

/*
 * A cheaper no-op sync (issue #12): nearly every login changes nothing.
 * Counted in CPU instructions per call on PostgreSQL 15 (callgrind), a
 * no-op spent them on what it needs (the member lock, the member's rows in
 * role_membership, the member and the listed groups in role, the result)
 * and on overhead it did not need:
 * - one statement served both a NULL and a given managed_prefix, so every
 *   call also set up the prefix test's subquery, run or not; and with a
 *   prefix that subquery looked up each of the member's groups in role a
 *   second time, the listed ones included, which the first lookup checks
 *   already;
 * - PERFORM ran the member lock as a query of its own;
 * - the five argument checks were five expressions, and "is the input
 *   valid?" and "is there nothing to do?" two more.
 * Now each case has its own statement, a listed group counts as managed
 * without a second look, the lock is an expression, and a good call
 * evaluates one expression for its arguments and one to find that it has
 * nothing to do. Per no-op: 11% fewer instructions without a prefix, 17%
 * fewer with 'group:' (the call sync_role_memberships_by_foreign_id and so
 * sync_oauth_login make); under pgbench about 1.1x the calls per second.
 * A changed login saves 3-4%.
 *
 * What did not help: reading the member's groups joined with their role
 * rows (a lookup per group either way, plus a join or an aggregate on top:
 * 12% more instructions than 000013 without a prefix; and a changed login
 * then needs a statement of its own to check the groups it adds); folding
 * the isolation test into the read (under 1%).
 *
 * Nothing else changes: the same checks in the same order, the same
 * SQLSTATEs and messages, the same lock, the same 40001 under snapshot
 * isolation, and a no-op still writes nothing and takes no transaction id.
 * The statements that diagnose an error and that write are 000013's.
 *
 * Written for PostgreSQL 10 and later (left(), not starts_with()); the
 * generic-plan setting (12+) is set again below, since CREATE OR REPLACE
 * resets it. No locks beyond the catalog's: logins go on.
 */

/*
 * As in 000013 (000001 says why it is race-free and what it raises), made
 * cheaper for a call that changes nothing, as the header says. Volatile: it
 * writes, and each statement needs a fresh snapshot.
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
  -- A good call evaluates one expression here; a bad one then meets the
  -- checks one by one, in the documented order.
  if sync_role_memberships.role_id is null or group_ids is null or array_ndims(group_ids) > 1
     or array_position(group_ids, null) is not null or sync_role_memberships.role_id = any (group_ids) then
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
  end if;

  -- The member lock, held until commit (see 000001's comment on the
  -- function). Taken in an expression: PERFORM would run it as a query of
  -- its own, at nearly twice the cost. It returns void, which is not NULL:
  -- the branch is empty and always taken.
  if pg_advisory_xact_lock(1919904869, sync_role_memberships.role_id) is not null then
  end if;

  -- Under snapshot isolation the read below would use the transaction's
  -- snapshot, which may predate the previous holder's commit. Locking the
  -- member's version row fails with 40001 in exactly that case.
  if current_setting('transaction_isolation') <> 'read committed' then
    insert into rolesync.role_membership_version as v (member_id)
    values (sync_role_memberships.role_id)
    on conflict (member_id) do update set version = v.version where false;
  end if;

  -- One statement, one fresh snapshot: v_valid, the listed ids that are live
  -- groups under the prefix, plus the member if it is live (one index scan
  -- of role); v_current, the member's groups under the prefix (one of
  -- role_membership). Sets are compared by containment, so order and
  -- repeats in group_ids do not matter.
  if managed_prefix is null then
    -- Every group is managed: no prefix test to start.
    select array(select r.id from public.role r
                  where r.id = any (group_ids || sync_role_memberships.role_id)
                    and r.deleted_at is null
                    and (r.id = sync_role_memberships.role_id or r.type = 'group')),
           array(select m.group_id from public.role_membership m
                  where m.member_id = sync_role_memberships.role_id)
      into v_valid, v_current;
  else
    -- A listed group counts as managed without a second look: v_current is
    -- used only once v_valid has every listed id, that is once each is a
    -- live group under the prefix. Only the member's other groups (granted
    -- by hand, as a rule) are looked up.
    select array(select r.id from public.role r
                  where r.id = any (group_ids || sync_role_memberships.role_id)
                    and r.deleted_at is null
                    and (r.id = sync_role_memberships.role_id
                         or (r.type = 'group' and left(r.foreign_id, length(managed_prefix)) = managed_prefix))),
           array(select m.group_id from public.role_membership m
                  where m.member_id = sync_role_memberships.role_id
                    and (m.group_id = any (group_ids)
                         or exists (select from public.role r
                                     where r.id = m.group_id and left(r.foreign_id, length(managed_prefix)) = managed_prefix)))
      into v_valid, v_current;
  end if;

  -- The no-op, in one expression: the member and the list are valid, and the
  -- member's groups are already the list.
  if sync_role_memberships.role_id = any (v_valid) and v_valid @> group_ids
     and v_current @> group_ids and group_ids @> v_current then
    added := '{}';
    removed := '{}';
    return; -- nothing to change, so nothing is written
  end if;

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
 * Plan each statement of the sync once per session, as 000012 and 000013 set
 * it (CREATE OR REPLACE above reset it): plan_cache_mode is PostgreSQL 12+;
 * on 10 and 11 the function plans as those versions do.
 */
do $$
begin
  if pg_catalog.current_setting('server_version_num')::integer >= 120000 then
    alter function public.sync_role_memberships(integer, integer[], text) set plan_cache_mode = force_generic_plan;
  end if;
end
$$;
