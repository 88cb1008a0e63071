--! Previous: sha1:2d0bc14d42bbb1f643859cffc4310db34c1f399f
--! Hash: sha1:44d885afff2e3c6b95c44eeabe06accbc89c2c52
--! Message: sync by foreign id
--! AllowInvalidHash

/*
 * PostgreSQL 10 and 11: 000008 without plan_cache_mode (12+) and with left()
 * for starts_with() (11+). The same function.
 */
/*
 * Aleph's whole OAuth group sync in one call: resolve the member by its
 * foreign_id, create the token's missing groups, and sync the member's
 * managed groups (foreign_id under managed_prefix) to exactly those named.
 *
 * Groups are created with INSERT ... ON CONFLICT (foreign_id) DO NOTHING, in
 * name order: any number of concurrent first logins naming the same new
 * groups all succeed, each group is created once, and two creators never
 * wait on each other in opposite orders. New groups get type 'group', the
 * name after the prefix (as Aleph's load_or_create("group:<name>") does), and
 * Aleph's values for its NOT NULL columns, which have no server defaults
 * (the booleans false; created_at and updated_at now, in UTC like Aleph).
 * Existing groups are looked up first, so a login that creates nothing
 * writes nothing, not even a sequence value.
 *
 * The sync itself is sync_role_memberships(member, ids, managed_prefix):
 * same lock, same guarantees. Memberships in groups outside the prefix,
 * granted by hand, stay. A soft-deleted group named in the list is neither
 * resurrected nor joined: its id is returned in `skipped`, and the login goes
 * on. Everything happens in the caller's transaction: one call, atomic.
 *
 * Errors (nothing is changed, no group is created): 22004 a NULL argument or
 * element; 22023 an empty or multi-dimensional list element, or a name that
 * is only the prefix; 22001 a foreign id longer than role.foreign_id allows;
 * RS001 unknown or soft-deleted member; RS003 a name that belongs to a
 * non-group role; RS004 the member in its own list; RS005 a name outside
 * managed_prefix. Volatile: it writes.
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
  v_bad text;
  v_max_length integer;
  v_member integer;
  v_member_deleted_at timestamp;
  v_target integer[];
  v_not_groups text;
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

  select string_agg(format('%L', n), ', ') into v_bad
    from unnest(v_names) as n where n = '' or n = managed_prefix;
  if v_bad is not null then
    raise exception using errcode = '22023',
      message = format('empty group names: %s', v_bad),
      hint = format('A group foreign id is the prefix %L followed by the group''s name.', managed_prefix);
  end if;
  select string_agg(format('%L', n), ', ') into v_bad
    from unnest(v_names) as n where left(n, length(managed_prefix)) <> managed_prefix;
  if v_bad is not null then
    raise exception using errcode = 'RS005',
      message = format('groups outside the managed prefix %L: %s', managed_prefix, v_bad),
      hint = 'Name groups as the prefix followed by their name, or pass the prefix they use.';
  end if;
  -- The limit is role.foreign_id's own: varchar(2048) in Aleph.
  select a.atttypmod - 4 into v_max_length
    from pg_catalog.pg_attribute a
   where a.attrelid = 'public.role'::regclass and a.attname = 'foreign_id' and a.atttypmod > 4;
  select string_agg(format('%s… (%s characters)', left(n, 40), length(n)), ', ') into v_bad
    from unnest(v_names) as n where length(n) > v_max_length;
  if v_bad is not null then
    raise exception using errcode = '22001',
      message = format('group foreign ids longer than %s characters: %s', v_max_length, v_bad),
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
         (select string_agg(format('%L (%s)', r.foreign_id, r.type), ', ' order by r.foreign_id)
            from public.role r
           where r.foreign_id = any (v_names) and r.deleted_at is null and r.type <> 'group')
    into v_target, skipped, v_not_groups;
  if v_not_groups is not null then
    raise exception using errcode = 'RS003',
      message = format('names belong to roles that are not groups: %s', v_not_groups),
      hint = 'A user or system role has this foreign id; rename the group at the identity provider.';
  end if;

  select s.added, s.removed into added, removed
    from public.sync_role_memberships(v_member, v_target, managed_prefix) s;
end;
$$;
comment on function public.sync_role_memberships_by_foreign_id(text, text[], text) is
  'Aleph''s OAuth group sync in one call: creates missing groups race-free, syncs the member''s managed groups; returns (added, removed, created, skipped).';

revoke all on function public.sync_role_memberships_by_foreign_id(text, text[], text) from public;
grant execute on function public.sync_role_memberships_by_foreign_id(text, text[], text) to :ROLESYNC_APP_ROLE;
-- Creating groups needs these too (the function runs as its caller).
grant insert on table public.role to :ROLESYNC_APP_ROLE;
grant usage on sequence public.role_id_seq to :ROLESYNC_APP_ROLE;
