--! Previous: -
--! Hash: sha1:717e76975d9ec75be858f9e2f3cf99c369bbd621
--! Message: schema
--! AllowInvalidHash

/*
 * PostgreSQL 10 and 11: 000001 as written for them. Only the syntax they lack
 * differs: no MATERIALIZED (12+; before 12 every CTE is computed on its own
 * anyway), left() for starts_with() (11+), and no plan_cache_mode (12+). The
 * functions are restated for every version by 000011 and 000012.
 */
/*
 * Schema: Aleph's two tables when they are absent, the archive of removed
 * rows, the monitoring view, and the functions. Nothing here scans or
 * rewrites role_membership: the index builds and the dedupe come in the
 * migrations after this one, so each step holds its locks only briefly.
 *
 * Strong locks wait at most lock_timeout; `npm run migrate` retries the whole
 * migration when it gives up (SQLSTATE 55P03), so logins never queue for long
 * behind a migration waiting for a long transaction.
 */
set local lock_timeout = '1s';

/*
 * Refuse a role_membership keyed on something else: adding our key there
 * would fail half-way, and guessing what the other key means is worse.
 */
do $$
declare
  v_columns text;
begin
  select string_agg(a.attname, ', ' order by a.attnum)
    into v_columns
    from pg_catalog.pg_constraint c
    join pg_catalog.pg_attribute a
      on a.attrelid = c.conrelid and a.attnum = any (c.conkey)
   where c.conrelid = pg_catalog.to_regclass('public.role_membership')
     and c.contype = 'p';
  if v_columns is not null and v_columns not in ('group_id, member_id') then
    raise exception using
      errcode = 'RS010',
      message = format('public.role_membership already has a primary key on (%s)', v_columns),
      hint = 'rolesync keys the table on (member_id, group_id), as Aleph 4.1 does; drop the other key first.';
  end if;
end
$$;

/*
 * Aleph's enum and tables, created only when absent, column for column as
 * Aleph's Alembic migrations leave them (Aleph supplies the boolean defaults
 * from Python, so the columns have none). An existing Aleph database keeps
 * its own tables untouched.
 */
do $$
begin
  if pg_catalog.to_regtype('public.role_type') is null then
    create type public.role_type as enum ('user', 'group', 'system');
  end if;
end
$$;

create table if not exists public.role (
  id serial primary key,
  created_at timestamp,
  updated_at timestamp,
  deleted_at timestamp,
  foreign_id varchar(2048) not null unique,
  name varchar not null,
  email varchar,
  api_key varchar,
  is_admin boolean not null,
  is_muted boolean not null,
  type public.role_type not null,
  password_digest varchar,
  reset_token varchar,
  notified_at timestamp,
  locale varchar,
  is_blocked boolean not null,
  is_tester boolean not null
);

-- Created in Aleph's pre-4.1 shape; the migrations after this one key it.
create table if not exists public.role_membership (
  group_id integer references public.role (id),
  member_id integer references public.role (id)
);

/*
 * Every row the dedupe removes is copied here first, with why and when, so
 * an operator can check or restore it. No foreign keys: the archive must
 * outlive the roles it mentions.
 */
create table if not exists public.role_membership_removed (
  id bigint generated always as identity primary key,
  group_id integer,
  member_id integer,
  reason text not null check (reason in ('duplicate', 'null_column')),
  removed_at timestamptz not null default now(),
  removed_by name not null default current_user
);
comment on table public.role_membership_removed is
  'Rows removed from role_membership by dedupe_role_memberships(): one row per removed copy, with the reason.';

/*
 * A version number per member, bumped by every sync_role_memberships() call
 * that changes the member's groups. It turns snapshot isolation's write skew
 * into a write-write conflict: under REPEATABLE READ or SERIALIZABLE a call
 * locks its member's row first, and PostgreSQL refuses (40001) when a newer
 * version was committed after the transaction's snapshot, instead of letting
 * the call diff against stale rows. READ COMMITTED calls do not need it (each
 * statement sees the latest commit), so their no-ops never touch it.
 */
create table if not exists public.role_membership_version (
  member_id integer primary key,
  version bigint not null default 0,
  changed_at timestamptz
);
comment on table public.role_membership_version is
  'How many times sync_role_memberships() changed each member''s groups, and when it last did.';

-- The seed's monitoring query: any row here is a bug, and a login failing.
create or replace view public.role_membership_duplicates as
  select m.group_id, m.member_id, count(*) as copies
    from public.role_membership m
   group by m.group_id, m.member_id
  having count(*) > 1;
comment on view public.role_membership_duplicates is
  'Pairs stored more than once in role_membership. Empty once the primary key exists.';

/*
 * Keeps duplicates out of role_membership whoever writes it, for Aleph code
 * that still deletes and re-inserts: an INSERT (or an UPDATE of the pair)
 * takes the member lock that sync_role_memberships() takes, then skips a row
 * whose pair is already stored. Before the key exists this keeps new
 * duplicates out; after, it spares concurrent legacy logins the unique
 * violation Aleph 4.1 gives them ("users can simply retry").
 * Deletes do not take the lock: a legacy login deletes (row locks) before it
 * inserts (member lock), so it never holds the member lock while waiting for
 * a row, and two legacy logins cannot deadlock. Measured: taking it on
 * DELETE too made 0.4% of two concurrent logins of one user deadlock.
 * Installed by migration 000003 and kept. Volatile: it reads and locks.
 */
create or replace function public.role_membership_guard()
returns trigger
language plpgsql
volatile
security invoker
set search_path = pg_catalog, pg_temp
as $$
begin
  if new.group_id is null or new.member_id is null then
    return new; -- the NOT NULL constraint (or check) has the last word on these
  end if;
  if tg_op = 'UPDATE' then
    if new.group_id = old.group_id and new.member_id = old.member_id then
      return new;
    end if;
    if old.member_id is not null and old.member_id < new.member_id then
      -- Moving a row between members changes both: lock them in id order.
      perform pg_catalog.pg_advisory_xact_lock(1919904869, old.member_id);
    end if;
  end if;
  -- The member lock: (1919904869 = 'role' in ASCII, member id).
  perform pg_catalog.pg_advisory_xact_lock(1919904869, new.member_id);
  if tg_op = 'UPDATE' and old.member_id is not null and old.member_id > new.member_id then
    perform pg_catalog.pg_advisory_xact_lock(1919904869, old.member_id);
  end if;
  if exists (
    select from public.role_membership m
     where m.group_id = new.group_id and m.member_id = new.member_id
  ) then
    return null; -- the pair is already there: skip this copy
  end if;
  return new;
end;
$$;
comment on function public.role_membership_guard() is
  'Trigger on role_membership: inserts take the member lock and skip a pair already stored.';

/*
 * Removes every duplicate copy (keeping exactly one of each pair) and every
 * row with a NULL column, archiving each removed row first. Idempotent.
 * Safe beside concurrent writers: the guard trigger (or the key) stops new
 * duplicates, and a row another session moved or deleted is skipped.
 * Returns the number of rows removed. Volatile: it deletes.
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
  -- With the primary key in place there can be neither; skip the scan.
  if exists (
    select from pg_catalog.pg_constraint c
     where c.conrelid = 'public.role_membership'::regclass and c.contype = 'p'
  ) then
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
  insert into public.role_membership_removed (group_id, member_id, reason)
  select r.group_id, r.member_id,
         case when r.group_id is null or r.member_id is null
              then 'null_column' else 'duplicate' end
    from removed r;
  get diagnostics v_removed = row_count;
  return v_removed;
end;
$$;
comment on function public.dedupe_role_memberships() is
  'Removes duplicate and NULL rows from role_membership, archiving each in role_membership_removed. Returns how many.';

/*
 * Makes member role_id's groups exactly the distinct ids in group_ids, and
 * returns what changed, each array sorted. MERGE semantics: rows that stay
 * are not touched, and a call that changes nothing writes nothing (no
 * transaction id, no WAL).
 *
 * managed_prefix (default NULL: every group) limits the sync to groups whose
 * foreign_id starts with it: memberships in other groups, granted by hand,
 * are neither added nor removed, and group_ids may name only managed groups.
 * sync_role_memberships_by_foreign_id() calls this with 'group:'.
 *
 * Why it is race-free: every call for a member first takes a transaction-
 * level advisory lock on (1919904869, member id). The lock is held to
 * commit, and in READ COMMITTED each later statement here takes a new
 * snapshot, so the read below sees the previous holder's committed rows.
 * Calls for one member therefore run one after another, each diffing against
 * the state its predecessor left, and the last to commit wins. Calls for
 * different members take different locks and never wait on each other.
 * Advisory locks need no transaction id, which keeps the no-op write-free.
 * (MERGE would not do: before PostgreSQL 17 it lacks NOT MATCHED BY SOURCE,
 * and it raises unique violations under concurrent inserts.)
 *
 * Errors (nothing is changed): 22004 a NULL argument or element; 22023 a
 * multi-dimensional array; RS001 unknown or soft-deleted member; RS002
 * unknown or soft-deleted group; RS003 a role that is not a group; RS004
 * the member in its own list; RS005 a group outside managed_prefix. Under REPEATABLE READ or SERIALIZABLE, a call
 * whose snapshot predates another call's change for the same member fails
 * with 40001: retry the whole transaction. Those levels also lock the
 * member's role_membership_version row, a small write even for a no-op.
 * Volatile: it writes.
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
    insert into public.role_membership_version as v (member_id)
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
    insert into public.role_membership_version as v (member_id, version, changed_at)
    values (sync_role_memberships.role_id, 1, now())
    on conflict (member_id)
    do update set version = v.version + 1, changed_at = excluded.changed_at
  )
  select array(select distinct d.group_id from deleted d order by d.group_id),
         array(select i.group_id from inserted i order by i.group_id)
    into removed, added;
end;
$$;
comment on function public.sync_role_memberships(integer, integer[], text) is
  'Sets member role_id''s groups (those under managed_prefix, default all) to exactly group_ids; returns (added, removed). Race-free; writes nothing when nothing changes.';

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

/*
 * NOT NULL without a long exclusive lock: a NOT VALID check rejects new NULL
 * rows at once, is validated after the dedupe (without blocking writers),
 * and then lets SET NOT NULL skip its full-table scan.
 */
do $$
begin
  if not exists (
       select from pg_catalog.pg_constraint c
        where c.conrelid = 'public.role_membership'::regclass and c.contype = 'p')
     and not exists (
       select from pg_catalog.pg_constraint c
        where c.conrelid = 'public.role_membership'::regclass
          and c.conname = 'role_membership_not_null')
  then
    alter table public.role_membership
      add constraint role_membership_not_null
      check (group_id is not null and member_id is not null) not valid;
  end if;
end
$$;

/*
 * Privileges. The functions run as the caller, so the application role needs
 * the table privileges they use; nothing is granted to PUBLIC.
 */
revoke all on function public.sync_role_memberships(integer, integer[], text) from public;
revoke all on function public.dedupe_role_memberships() from public;
revoke all on function public.role_membership_guard() from public;
revoke all on function public.role_membership_check() from public;
grant execute on function public.sync_role_memberships(integer, integer[], text) to :ROLESYNC_APP_ROLE;
grant select on table public.role to :ROLESYNC_APP_ROLE;
grant select, insert, delete on table public.role_membership to :ROLESYNC_APP_ROLE;
grant select, insert, update on table public.role_membership_version to :ROLESYNC_APP_ROLE;
grant select on table public.role_membership_duplicates to :ROLESYNC_APP_ROLE;
