--! Previous: sha1:f30e2a6db218f543b0bcc4065d51cae5e36ce44d
--! Hash: sha1:8f5ad9bce21febeb7addb367164a01223c104a81
--! Message: aleph life cycle

/*
 * rolesync inside Aleph's life cycle: out of the way of Aleph's own tooling.
 *
 * 1. rolesync's tables leave public for a schema of their own. Alembic's
 *    autogenerate compares Aleph's models with public and proposes
 *    op.drop_table for every table it does not know; applied unedited, that
 *    dropped the archive and broke the sync. SET SCHEMA moves each table with
 *    its rows, its identity sequence, its indexes and its grants.
 * 2. The primary key's name is left to Aleph. Where Aleph has yet to run its
 *    revision 131674bde902 (ADD CONSTRAINT role_membership_pkey PRIMARY KEY,
 *    which fails on a table with any primary key), the table is keyed by a
 *    UNIQUE constraint under rolesync's name on the index 000010 built, and
 *    the primary key 000007 added goes, in one transaction: the table is
 *    never without a key. The columns stay NOT NULL. Once Aleph's revision
 *    has added its key, the next `rolesync migrate` drops rolesync's
 *    (hooks/drop-redundant-key.sql). Where the primary key stays, the index
 *    000010 built is dropped here.
 * 3. The functions that name these tables or ask "is the table keyed?" are
 *    restated: the archive and the version table in their new schema, and a
 *    key is a primary key or rolesync's unique constraint.
 *
 * Strong locks wait at most lock_timeout; `rolesync migrate` retries.
 * role_membership is locked first, in the order a sync at READ COMMITTED
 * takes its locks (role_membership, then the version table), so that the
 * two never wait on each other.
 */
set local lock_timeout = '1s';

/*
 * First, wait out the calls that may still run 000001's body, which names
 * public.role_membership_version: those whose statement began before this
 * transaction did, so before the bridge (000011) committed. A call blocked
 * on its member lock holds no lock on the table yet, so the LOCK below
 * would not wait for it, and it would fail once the table has moved.
 * Statements that start from now on run the bridge. They are found by their
 * text, as `rolesync migrate` sees it in pg_stat_activity (the owner sees
 * other roles' statements only as a superuser or with pg_read_all_stats;
 * without that this wait sees only its own role's). After 10 s: 55P03, and
 * the runner retries.
 */
do $$
declare
  v_deadline timestamptz := pg_catalog.clock_timestamp() + interval '10 seconds';
begin
  loop
    perform pg_catalog.pg_stat_clear_snapshot(); -- pg_stat_activity is otherwise read once per transaction
    exit when not exists (
      select from pg_catalog.pg_stat_activity a
       where a.datname = pg_catalog.current_database()
         and a.pid <> pg_catalog.pg_backend_pid()
         and a.backend_type = 'client backend'
         and a.state = 'active'
         and a.query_start < pg_catalog.transaction_timestamp()
         and a.query ~* 'sync_(role_memberships|oauth_login)');
    if pg_catalog.clock_timestamp() > v_deadline then
      raise exception using
        errcode = '55P03',
        message = 'calls of sync_role_memberships() that started before the bridge migration are still running',
        hint = 'A call is blocked behind a long transaction: end it (pg_stat_activity); `rolesync migrate` retries.';
    end if;
    perform pg_catalog.pg_sleep(0.01);
  end loop;
end
$$;

lock table public.role_membership in access exclusive mode;

create schema if not exists rolesync;
comment on schema rolesync is
  'rolesync''s own tables, out of public, which Aleph''s Alembic autogenerate compares with its models.';
revoke all on schema rolesync from public;
grant usage on schema rolesync to :ROLESYNC_APP_ROLE;

do $$
begin
  if pg_catalog.to_regclass('public.role_membership_removed') is not null then
    alter table public.role_membership_removed set schema rolesync;
  end if;
  if pg_catalog.to_regclass('public.role_membership_version') is not null then
    alter table public.role_membership_version set schema rolesync;
  end if;
end
$$;

/*
 * Whether Aleph has yet to run its revision 131674bde902, which adds
 * role_membership_pkey: Aleph's Alembic ledger (public.alembic_version)
 * names a revision from before it. The revisions known to come with or after
 * it (131674bde902, d46fc882ec6b, 31e24765dee3, 2c55cafd26ce) do not, and
 * neither does a role table with 4.1's api_key_digest, so that a later
 * revision this list does not know is not taken for an old one. Without the
 * ledger (or with an empty one) the database is not Aleph's Alembic's, and
 * no one else adds a key.
 * Stable: it only reads.
 */
create or replace function rolesync.aleph_adds_primary_key()
returns boolean
language plpgsql
stable
security invoker
set search_path = pg_catalog, pg_temp
as $$
begin
  if pg_catalog.to_regclass('public.alembic_version') is null then
    return false;
  end if;
  if exists (
    select from pg_catalog.pg_attribute a
     where a.attrelid = pg_catalog.to_regclass('public.role') and a.attname = 'api_key_digest' and not a.attisdropped)
  then
    return false;
  end if;
  -- An empty ledger is no Aleph release: its upgrade would start from scratch.
  return exists (
    select from public.alembic_version v
     where v.version_num not in ('131674bde902', 'd46fc882ec6b', '31e24765dee3', '2c55cafd26ce'));
end;
$$;
comment on function rolesync.aleph_adds_primary_key() is
  'True when Aleph''s Alembic has yet to run 131674bde902, which adds role_membership_pkey: rolesync then keys role_membership under its own name.';

/*
 * The constraint that keys role_membership on (member_id, group_id): Aleph's
 * primary key when there is one, else rolesync's unique constraint; NULL
 * when there is neither. Stable: it only reads the catalog.
 */
create or replace function rolesync.role_membership_key()
returns name
language sql
stable
security invoker
set search_path = pg_catalog, pg_temp
as $$
  select c.conname
    from pg_catalog.pg_constraint c
   where c.conrelid = pg_catalog.to_regclass('public.role_membership')
     and (c.contype = 'p' or (c.contype = 'u' and c.conname = 'rolesync_role_membership_key'))
   order by c.contype = 'p' desc
   limit 1
$$;
comment on function rolesync.role_membership_key() is
  'The constraint keying role_membership: role_membership_pkey, or rolesync_role_membership_key until Aleph adds its own.';

do $$
declare
  v_primary text;
  v_invalid boolean;
begin
  select c.conname into v_primary
    from pg_catalog.pg_constraint c
   where c.conrelid = 'public.role_membership'::regclass and c.contype = 'p';
  select not (i.indisvalid and i.indisready) into v_invalid
    from pg_catalog.pg_index i
   where i.indexrelid = pg_catalog.to_regclass('public.rolesync_role_membership_key');

  if rolesync.aleph_adds_primary_key() then
    if v_invalid then
      raise exception using
        errcode = 'RS011',
        message = 'index rolesync_role_membership_key on public.role_membership is INVALID',
        hint = 'An index build was interrupted. Run `rolesync migrate` again: it drops the invalid index and rebuilds it.';
    end if;
    if v_primary is not null and not exists (
         select from pg_catalog.pg_constraint c
          where c.conrelid = 'public.role_membership'::regclass and c.conname = 'rolesync_role_membership_key')
    then
      -- One statement under one lock: no one sees the table without a key.
      -- The primary key 000007 added, or one of another name on these columns.
      execute pg_catalog.format(
        'alter table public.role_membership
           add constraint rolesync_role_membership_key unique using index rolesync_role_membership_key,
           drop constraint %I', v_primary);
    end if;
  elsif v_primary is not null and v_invalid is not null and not exists (
          select from pg_catalog.pg_constraint c
           where c.conrelid = 'public.role_membership'::regclass and c.conname = 'rolesync_role_membership_key')
  then
    drop index public.rolesync_role_membership_key;
  end if;
end
$$;

/*
 * As in 000001, but the archive is rolesync.role_membership_removed, and a
 * table keyed by rolesync's unique constraint needs no scan either.
 * Volatile: it deletes.
 */
create or replace function public.dedupe_role_memberships()
returns bigint
language plpgsql
volatile
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
  v_removed bigint;
begin
  -- With a key in place there can be neither duplicates nor NULL rows; skip the scan.
  if rolesync.role_membership_key() is not null then
    return 0;
  end if;

  -- Two steps, each cheap on a large table: find the duplicated pairs in one
  -- ordered pass over the group index (an index-only scan once the table is
  -- vacuumed), then fetch just their rows. A window over the whole table would
  -- either sort it or visit the heap in index order, row by row.
  with duplicated as (
    select m.group_id, m.member_id
      from public.role_membership m
     where m.group_id is not null and m.member_id is not null
     group by m.group_id, m.member_id
    having count(*) > 1
    offset 0 -- a step of its own on every version (12+ would inline a plain CTE; MATERIALIZED is 12+ syntax)
  ), copies as (
    select c.ctid, row_number() over (partition by d.group_id, d.member_id) as copy
      from duplicated d
     cross join lateral (
       select m.ctid from public.role_membership m
        where m.group_id = d.group_id and m.member_id = d.member_id
       offset 0 -- keeps this a per-pair index lookup, not a hash join over the table
     ) c
  ), doomed as (
    select copies.ctid from copies where copies.copy > 1
    union all
    select m.ctid from public.role_membership m where m.group_id is null or m.member_id is null
  ), removed as (
    -- A TID scan: ctid = any(array) stays linear however many rows go.
    delete from public.role_membership m
     where m.ctid = any (array(select doomed.ctid from doomed))
    returning m.group_id, m.member_id
  )
  insert into rolesync.role_membership_removed (group_id, member_id, reason)
  select r.group_id, r.member_id,
         case when r.group_id is null or r.member_id is null
              then 'null_column' else 'duplicate' end
    from removed r;
  get diagnostics v_removed = row_count;
  return v_removed;
end;
$$;
comment on function public.dedupe_role_memberships() is
  'Removes duplicate and NULL rows from role_membership, archiving each in rolesync.role_membership_removed. Returns how many.';

/*
 * As in 000011 (the bridge for this move), with the version table named
 * rolesync.role_membership_version again and the search_path pinned:
 * 000001's body, written for PostgreSQL 10 and later. Volatile: it writes.
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
 * Plan each statement of the sync once per session: a custom plan per call
 * would cost more than the no-op itself. plan_cache_mode is PostgreSQL 12+;
 * on 10 and 11 the function plans as those versions do (docs/benchmarks.md).
 */
do $$
begin
  if pg_catalog.current_setting('server_version_num')::integer >= 120000 then
    alter function public.sync_role_memberships(integer, integer[], text) set plan_cache_mode = force_generic_plan;
  end if;
end
$$;

/*
 * As in 000001, with two changes. The key check accepts either key (Aleph's
 * primary key, or rolesync's unique constraint on a database Aleph has yet
 * to upgrade to 4.1) and says which one keys the table. A new check,
 * redundant_key, reports both at once: Aleph's 4.1 upgrade has added its key
 * since the last `rolesync migrate`, which then drops rolesync's.
 * Stable: it only reads.
 */
create or replace function public.role_membership_check()
returns table (check_name text, ok boolean, count bigint, detail text, hint text)
language plpgsql
stable
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
  v_key name := rolesync.role_membership_key();
  v_keys bigint;
  v_copies bigint := 0;
  v_null_rows bigint := 0;
  v_invalid text;
  v_count bigint;
begin
  check_name := 'primary_key';
  ok := v_key is not null;
  count := null;
  detail := case
    when v_key = 'rolesync_role_membership_key'
      then 'keyed by rolesync_role_membership_key (UNIQUE (member_id, group_id)); Aleph''s 4.1 upgrade adds role_membership_pkey'
    when v_key is not null then format('%s (member_id, group_id) is in place', v_key)
    else 'role_membership has no key: concurrent logins can store a pair twice' end;
  hint := case when v_key is null then 'Run `rolesync migrate`: it cleans the table and adds the key online.' end;
  return next;

  select count(*) into v_keys
    from pg_catalog.pg_constraint c
   where c.conrelid = 'public.role_membership'::regclass
     and (c.contype = 'p' or c.conname = 'rolesync_role_membership_key');
  check_name := 'redundant_key';
  ok := v_keys <= 1;
  count := v_keys;
  detail := case when v_keys > 1
    then 'both role_membership_pkey and rolesync_role_membership_key: two unique indexes on (member_id, group_id)'
    else 'one key on (member_id, group_id)' end;
  hint := case when v_keys > 1 then 'Aleph''s 4.1 upgrade added its key: run `rolesync migrate`, which drops rolesync''s.' end;
  return next;

  -- Without a key, duplicates and NULL rows need a scan; with one there can be none.
  if v_key is null then
    select coalesce(sum(d.copies - 1), 0) into v_copies from public.role_membership_duplicates d;
    select count(*) into v_null_rows from public.role_membership m
     where m.group_id is null or m.member_id is null;
  end if;
  check_name := 'duplicates';
  ok := v_copies = 0;
  count := v_copies;
  detail := format('%s surplus cop%s of stored pairs', v_copies, case when v_copies = 1 then 'y' else 'ies' end);
  hint := case when v_copies > 0 then 'Run `rolesync migrate` (or `rolesync dedupe`): copies are archived in rolesync.role_membership_removed.' end;
  return next;

  check_name := 'null_rows';
  ok := v_null_rows = 0;
  count := v_null_rows;
  detail := format('%s row(s) with a NULL group_id or member_id', v_null_rows);
  hint := case when v_null_rows > 0 then 'Run `rolesync migrate` (or `rolesync dedupe`): NULL rows are archived in rolesync.role_membership_removed.' end;
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

revoke all on function rolesync.aleph_adds_primary_key() from public;
revoke all on function rolesync.role_membership_key() from public;
-- The app role's sync needs the version table (its grants moved with it) and
-- nothing else here; role_membership_key() is for the owner's dedupe and check.
