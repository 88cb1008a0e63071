--! Previous: sha1:ad241bef498fc379df13fc3ecd0cc4151fe6ef04
--! Hash: sha1:8de6928c137857a0af2eb1ad2b5d6ac22439ce05
--! Message: aleph login

/*
 * Aleph's whole OAuth login, lock first, for the Aleph plugin (python/,
 * rolesync.aleph), and OpenAleph as a line of its own.
 *
 * 1. sync_aleph_login(): the login of both maintained lines in one call,
 *    each line's rules as parameters. One user's logins are serialized from
 *    the first statement on, before the user row exists or is found: by an
 *    advisory lock on the foreign id, in a key space of its own, always
 *    taken before the member lock. The login then looks the user up (row
 *    locked), re-keys it by email (OAUTH_MIGRATE_SUB), creates or refuses it,
 *    and syncs its groups, all under that lock; both locks and the row lock
 *    are held to commit. So the callback's own write to role afterwards
 *    (last_login_at, then the commit) finds the row already locked by its
 *    own transaction, and cannot deadlock with another login of that user.
 *    Measured with Aleph 4.1.6's real callback: the hand patch of the docs
 *    before 0.2.0 wrote role (the OAUTH_MIGRATE_SUB branch) before
 *    sync_oauth_login took its member lock, and 27 to 66 of 200 concurrent
 *    first logins deadlocked.
 * 2. sync_oauth_login(), restated with the same foreign-id lock first: it
 *    inserted a new user before it took any lock.
 * 3. rolesync.alembic_line(): which line's Alembic chain the database
 *    follows, from its revision. OpenAleph forks from Aleph's chain after
 *    c52a1f469ac7, and its chain never adds a key to role_membership; until
 *    now it read as a pre-4.1 Aleph, whose 4.1 upgrade adds
 *    role_membership_pkey. rolesync.aleph_adds_primary_key() is restated on
 *    it, so check, status, the hooks and uninstall tell the truth.
 * 4. Where no one else will key the table (OpenAleph, or a revision rolesync
 *    does not know), rolesync's unique key stays for good: the columns go
 *    back to nullable, as OpenAleph's models declare them (its `alembic
 *    check` proposed DROP NOT NULL), and the check role_membership_not_null
 *    keeps NULL rows out; 000018 validates it without blocking writers.
 * 5. role_membership_check(), restated: the key's detail per line, the new
 *    function watched, and the privileges it needs checked.
 *
 * Locks: ACCESS EXCLUSIVE on role_membership for milliseconds, only where
 * step 4 applies; otherwise the catalog's. lock_timeout 1s; the runner retries.
 */
set local lock_timeout = '1s';

/*
 * The line whose Alembic chain this database follows, from public.alembic_version:
 * - 'none': no Alembic ledger, or an empty one (a standalone database);
 * - 'aleph-before-4.1': a revision of Aleph's chain before 131674bde902
 *   (Aleph 4.1), which adds role_membership_pkey; the revisions up to
 *   c52a1f469ac7 are also the start of OpenAleph's chain, and read as Aleph
 *   until OpenAleph's own first revision runs;
 * - 'aleph-4.1': 131674bde902 or a later Aleph revision, or a role table with
 *   4.1's api_key_digest (a later Aleph revision this list does not know);
 * - 'openaleph': a revision of OpenAleph's own chain (e003034f4af8 on; head
 *   575ded9400fd at OpenAleph 5.3);
 * - 'unknown': any other revision. rolesync then expects no one else to key
 *   the table, as on OpenAleph: its unique key stays, and a primary key added
 *   later makes it redundant (the migrate hook drops it then).
 * The same test is migrations/conditions/alembic-line.sql, which runs where
 * this function does not exist yet (uninstall of an older install); a test
 * keeps the two equal. Stable: it only reads.
 */
create or replace function rolesync.alembic_line()
returns text
language plpgsql
stable
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
  v_revisions text[];
begin
  if pg_catalog.to_regclass('public.alembic_version') is null then
    return 'none';
  end if;
  -- Planned at its first run, once the table is known to exist: no dynamic SQL.
  v_revisions := array(select v.version_num::text from public.alembic_version v);
  if pg_catalog.cardinality(v_revisions) = 0 then
    return 'none';
  end if;
  if v_revisions && array['131674bde902', 'd46fc882ec6b', '31e24765dee3', '2c55cafd26ce']
     or exists (select from pg_catalog.pg_attribute a
                 where a.attrelid = pg_catalog.to_regclass('public.role') and a.attname = 'api_key_digest'
                   and not a.attisdropped) then
    return 'aleph-4.1';
  end if;
  if v_revisions && array['e003034f4af8', '5d52e680a2f3', '48e003f89633', '575ded9400fd'] then
    return 'openaleph';
  end if;
  if v_revisions <@ array['af9b37868cf3', '8a8ef1f7e6fa', '40d6ffcd8442', 'b3ff632002d9', '1519391870a0',
                          'b3959bf8cc66', '2b478162b2b7', '2979a1322381', 'a8849e4e6784', 'aac638b04072',
                          '23c4b0bf13bf', '8dff301e1b1f', '4c9e198c5b31', '9dcef7592cea', 'aa486b9e627e',
                          '18f53aae83ae', '5b681871c1ab', '274270e01613', 'c52a1f469ac7', '8adf50aadcb0'] then
    return 'aleph-before-4.1';
  end if;
  return 'unknown';
end;
$$;
comment on function rolesync.alembic_line() is
  'Whose Alembic chain the database follows: none, aleph-before-4.1, aleph-4.1, openaleph or unknown (treated as: no one else keys role_membership).';
revoke all on function rolesync.alembic_line() from public;

/*
 * As in 000012, decided by rolesync.alembic_line(): only Aleph's own chain
 * before 4.1 adds role_membership_pkey. Until now an OpenAleph database read
 * as one. Stable: it only reads.
 */
create or replace function rolesync.aleph_adds_primary_key()
returns boolean
language sql
stable
security invoker
set search_path = pg_catalog, pg_temp
as $$
  select rolesync.alembic_line() = 'aleph-before-4.1'
$$;
comment on function rolesync.aleph_adds_primary_key() is
  'True when Aleph''s Alembic has yet to run 131674bde902, which adds role_membership_pkey (rolesync.alembic_line() = aleph-before-4.1).';

/*
 * Where no one else will key role_membership (OpenAleph, or an unknown
 * revision) and rolesync's unique key keys it with NOT NULL columns (what
 * 000007 and 000012 left on PostgreSQL 12+): the columns go back to nullable,
 * as OpenAleph's models declare them, and a NOT VALID check keeps NULL rows
 * out from now on (new rows are checked at once; 000018 validates the rows
 * already there, which are all non-null, without blocking writers). Both are
 * catalog changes: ACCESS EXCLUSIVE for milliseconds, no scan. On PostgreSQL
 * 10 and 11 the table has this shape already.
 */
do $$
begin
  if rolesync.alembic_line() in ('openaleph', 'unknown')
     and exists (select from pg_catalog.pg_constraint c
                  where c.conrelid = 'public.role_membership'::regclass and c.conname = 'rolesync_role_membership_key')
     and not exists (select from pg_catalog.pg_constraint c
                      where c.conrelid = 'public.role_membership'::regclass and c.contype = 'p')
     and (select pg_catalog.bool_or(a.attnotnull) from pg_catalog.pg_attribute a
           where a.attrelid = 'public.role_membership'::regclass and a.attname in ('group_id', 'member_id'))
  then
    lock table public.role_membership in access exclusive mode;
    if not exists (select from pg_catalog.pg_constraint c
                    where c.conrelid = 'public.role_membership'::regclass and c.conname = 'role_membership_not_null') then
      alter table public.role_membership
        add constraint role_membership_not_null check (group_id is not null and member_id is not null) not valid;
    end if;
    alter table public.role_membership
      alter column group_id drop not null,
      alter column member_id drop not null;
    raise notice 'role_membership: no one else keys it (Alembic line %): rolesync_role_membership_key stays, the columns are nullable as its models declare, and role_membership_not_null keeps NULL rows out',
      rolesync.alembic_line();
  end if;
end
$$;

/*
 * Aleph's OAuth login, both lines, in one call: handle_oauth without the
 * token parsing, with each line's database rules as parameters. The caller
 * (the plugin) parses the token, computes the groups with the line's own
 * _get_groups, and passes what the line's code would decide from it:
 *
 *   member_foreign_id  '<OAUTH_HANDLER>:<sub>' (the email without a sub)
 *   member_name        the token's name (else given_name); may be NULL
 *   member_email       the token's email (else upn); may be NULL
 *   group_foreign_ids  'group:<name>' for each token group but the admin group
 *   admin_group        the token carries OAUTH_ADMIN_GROUP
 *   auto_admin         is_auto_admin(email): the email is in ALEPH_ADMINS
 *   migrate_sub        OAUTH_MIGRATE_SUB: a user found by email instead of by
 *                      foreign id is re-keyed to the new foreign id, and named
 *                      after the token (else its email, else the foreign id)
 *   email_rule         'on_create' (both lines: a new user gets the token's
 *                      email, an existing one keeps its own) or 'replace' (a
 *                      changed, non-empty email is stored, touching updated_at)
 *   update_name        OpenAleph: the name becomes the token's name (else its
 *                      email) when that is non-empty and differs, touching updated_at
 *   admin_rule         'grant' (Aleph: is_admin becomes true with the admin
 *                      group, or for a new auto-admin user; never false) or
 *                      'recompute' (OpenAleph: is_admin = auto_admin or admin_group)
 *   touch              'always' (Aleph: updated_at on every login, which keeps
 *                      the user "alertable") or 'on_change' (OpenAleph: when
 *                      the groups or the name change)
 *   api_keys           OpenAleph: keys for the roles this login creates, [1]
 *                      the user, [1 + i] group i of group_foreign_ids; NULL: none
 *   managed_prefix     NULL (both lines: the token is the whole truth, every
 *                      membership is synced, those an admin granted by hand
 *                      included) or a prefix ('group:') whose groups alone are synced
 *
 * A new user: type user, name = the token's name, else its email, else the
 * foreign id ('' counts as absent, as Python's `or`); the email as given;
 * is_admin per the admin rule; the other booleans false; created_at and
 * updated_at now, in UTC, as Aleph's models set them. New groups: named
 * after the part after 'group:', with their api key if given. Existing group
 * rows are never written. A soft-deleted group named in the token is neither
 * resurrected nor joined: it is returned in `skipped` (Aleph's own code fails
 * with a unique violation there).
 *
 * Locks, in this order, each held to commit: the foreign-id lock
 * (1919904870 = 'rolf', hashtext(member_foreign_id)), the user's role row
 * (FOR NO KEY UPDATE, or the row the login inserts), new groups' rows (in
 * name order), the member lock (1919904869 = 'role', member id), its
 * role_membership rows. Aleph's own login, which an old pod of a rolling
 * deploy still runs, takes the user's row before the member lock too. Logins
 * of different users share no lock (bar a hashtext collision, one in 2^32).
 *
 * Errors (nothing is changed, no role is created): 22004 a NULL required
 * argument or element; 22023 an empty foreign id, a multi-dimensional list,
 * an empty group name, or a rule that is none of its values; 22001 a foreign
 * id longer than role.foreign_id allows; RS001 a soft-deleted user; RS006 a
 * blocked user; RS003 a user that is not of type user, or a group name that
 * belongs to a role that is not a group; RS004 the user in its own list;
 * RS005 a group outside managed_prefix. Returns the user's id, whether this
 * login created it, its is_admin, and the groups added, removed, created and
 * skipped, by foreign id, sorted. Volatile: it writes.
 */
create or replace function public.sync_aleph_login(
  member_foreign_id text,
  member_name text,
  member_email text,
  group_foreign_ids text[],
  admin_group boolean default false,
  auto_admin boolean default false,
  migrate_sub boolean default false,
  email_rule text default 'on_create',
  update_name boolean default false,
  admin_rule text default 'grant',
  touch text default 'always',
  api_keys text[] default null,
  managed_prefix text default null,
  out member_id integer,
  out member_created boolean,
  out is_admin boolean,
  out added text[],
  out removed text[],
  out created text[],
  out skipped text[]
)
language plpgsql
volatile
security invoker
set search_path = pg_catalog, pg_temp
as $$
declare
  v_now timestamp := pg_catalog.clock_timestamp() at time zone 'utc';
  v_names text[];
  v_bad text[];
  v_max_length integer;
  v_deleted boolean;
  v_blocked boolean;
  v_type text;
  v_is_admin boolean;
  v_name text;
  v_email text;
  v_api_key text;
  v_new_name text;
  v_touched boolean := false;
  v_set_admin boolean;
  v_set_name text;
  v_set_email text;
  v_target integer[];
  v_not_groups text[];
  v_added integer[];
  v_removed integer[];
begin
  if member_foreign_id is null or group_foreign_ids is null or admin_group is null or auto_admin is null
     or migrate_sub is null or email_rule is null or update_name is null or admin_rule is null or touch is null then
    raise exception using errcode = '22004',
      message = pg_catalog.format('sync_aleph_login: %s must not be null',
                  case when member_foreign_id is null then 'member_foreign_id'
                       when group_foreign_ids is null then 'group_foreign_ids'
                       when admin_group is null then 'admin_group' when auto_admin is null then 'auto_admin'
                       when migrate_sub is null then 'migrate_sub' when email_rule is null then 'email_rule'
                       when update_name is null then 'update_name' when admin_rule is null then 'admin_rule'
                       else 'touch' end),
      hint = 'Pass an empty array for a user without groups. member_name, member_email, api_keys and managed_prefix may be NULL.';
  end if;
  if email_rule not in ('on_create', 'replace') or admin_rule not in ('grant', 'recompute')
     or touch not in ('always', 'on_change') then
    raise exception using errcode = '22023',
      message = pg_catalog.format('sync_aleph_login: %s',
                  case when email_rule not in ('on_create', 'replace')
                         then pg_catalog.format('email_rule must be on_create or replace, not %L', email_rule)
                       when admin_rule not in ('grant', 'recompute')
                         then pg_catalog.format('admin_rule must be grant or recompute, not %L', admin_rule)
                       else pg_catalog.format('touch must be always or on_change, not %L', touch) end),
      hint = 'Aleph 4.1: on_create, grant, always. OpenAleph 5: on_create, recompute, on_change.';
  end if;
  if member_foreign_id = '' then
    raise exception using errcode = '22023', message = 'sync_aleph_login: member_foreign_id must not be empty';
  end if;
  if pg_catalog.array_ndims(group_foreign_ids) > 1 then
    raise exception using errcode = '22023',
      message = 'sync_aleph_login: group_foreign_ids must be a one-dimensional array';
  end if;
  if pg_catalog.array_position(group_foreign_ids, null) is not null then
    raise exception using errcode = '22004',
      message = pg_catalog.format('sync_aleph_login: group_foreign_ids must not contain NULL (element %s is NULL)',
                                  pg_catalog.array_position(group_foreign_ids, null));
  end if;

  v_names := array(select distinct n from pg_catalog.unnest(group_foreign_ids) as n order by n);
  v_bad := array(select pg_catalog.format('%L', n) from pg_catalog.unnest(v_names) as n
                  where n = '' or n = 'group:' or n = managed_prefix order by n);
  if pg_catalog.cardinality(v_bad) > 0 then
    raise exception using errcode = '22023',
      message = pg_catalog.format('empty group names: %s', rolesync.format_list(v_bad)),
      hint = 'A group foreign id is ''group:'' followed by the group''s name.';
  end if;
  if managed_prefix is not null then
    v_bad := array(select pg_catalog.format('%L', n) from pg_catalog.unnest(v_names) as n
                    where left(n, length(managed_prefix)) <> managed_prefix order by n);
    if pg_catalog.cardinality(v_bad) > 0 then
      raise exception using errcode = 'RS005',
        message = pg_catalog.format('groups outside the managed prefix %L: %s', managed_prefix, rolesync.format_list(v_bad)),
        hint = 'Name groups as the prefix followed by their name, or pass NULL to manage every group.';
    end if;
  end if;
  -- The limit is role.foreign_id's own: varchar(2048) in Aleph.
  select a.atttypmod - 4 into v_max_length
    from pg_catalog.pg_attribute a
   where a.attrelid = 'public.role'::regclass and a.attname = 'foreign_id' and a.atttypmod > 4;
  v_bad := array(select pg_catalog.format('%s… (%s characters)', left(n, 40), length(n))
                   from pg_catalog.unnest(member_foreign_id || v_names) as n
                  where length(n) > v_max_length);
  if pg_catalog.cardinality(v_bad) > 0 then
    raise exception using errcode = '22001',
      message = pg_catalog.format('foreign ids longer than %s characters: %s', v_max_length, rolesync.format_list(v_bad)),
      hint = 'role.foreign_id cannot hold them; shorten the subject or the group names at the identity provider.';
  end if;
  if member_foreign_id = any (v_names) then
    raise exception using errcode = 'RS004',
      message = pg_catalog.format('role %L cannot be a member of itself', member_foreign_id),
      hint = 'Remove the user''s own foreign id from group_foreign_ids.';
  end if;

  -- The foreign-id lock: one user's logins, one after another, from here on.
  perform pg_catalog.pg_advisory_xact_lock(1919904870, pg_catalog.hashtext(member_foreign_id));

  member_created := false;
  select r.id, r.deleted_at is not null, r.is_blocked, r.type::text, r.is_admin, r.name, r.email, r.api_key
    into member_id, v_deleted, v_blocked, v_type, v_is_admin, v_name, v_email, v_api_key
    from public.role r where r.foreign_id = member_foreign_id
     for no key update;
  if v_deleted then
    raise exception using errcode = 'RS001',
      message = pg_catalog.format('member role %L is soft-deleted', member_foreign_id),
      hint = 'A soft-deleted user cannot log in; an admin restores it by clearing deleted_at.';
  end if;

  if member_id is null and migrate_sub and member_email is not null then
    -- OAUTH_MIGRATE_SUB: the user under its email, re-keyed to the new foreign id.
    select r.id, r.is_blocked, r.type::text, r.is_admin, r.name, r.email, r.api_key
      into member_id, v_blocked, v_type, v_is_admin, v_name, v_email, v_api_key
      from public.role r
     where pg_catalog.lower(r.email) = pg_catalog.lower(member_email) and r.type = 'user' and r.deleted_at is null
     order by r.id
     limit 1
       for no key update;
    if member_id is not null then
      -- Aleph's Role.update({"name": name}): a NULL name falls back to the stored email, else the foreign id.
      v_name := coalesce(member_name, nullif(v_email, ''), member_foreign_id);
      update public.role r set foreign_id = member_foreign_id, name = v_name, updated_at = v_now
       where r.id = member_id;
      v_touched := true;
    end if;
  end if;

  if member_id is null then
    insert into public.role as r (foreign_id, name, email, type, is_admin, is_muted, is_blocked, is_tester,
                                  created_at, updated_at, api_key)
    values (member_foreign_id, coalesce(nullif(member_name, ''), member_email, member_foreign_id), member_email,
            'user', auto_admin, false, false, false, v_now, v_now, api_keys[1])
    on conflict (foreign_id) do nothing
    returning r.id, r.is_admin, r.name, r.email into member_id, v_is_admin, v_name, v_email;
    member_created := member_id is not null;
    v_blocked := false;
    v_type := 'user';
    if not member_created then
      -- Another writer (not a login: those wait on the foreign-id lock) created it; this statement sees its commit.
      select r.id, r.deleted_at is not null, r.is_blocked, r.type::text, r.is_admin, r.name, r.email
        into member_id, v_deleted, v_blocked, v_type, v_is_admin, v_name, v_email
        from public.role r where r.foreign_id = member_foreign_id
         for no key update;
      if member_id is null then
        raise exception using errcode = '40001',
          message = pg_catalog.format('member role %L was created after this transaction''s snapshot', member_foreign_id),
          hint = 'Retry the whole transaction: a fresh snapshot finds the role.';
      end if;
      if v_deleted then
        raise exception using errcode = 'RS001',
          message = pg_catalog.format('member role %L is soft-deleted', member_foreign_id),
          hint = 'A soft-deleted user cannot log in; an admin restores it by clearing deleted_at.';
      end if;
    end if;
  end if;

  if v_blocked then
    raise exception using errcode = 'RS006',
      message = pg_catalog.format('member role %L is blocked', member_foreign_id),
      hint = 'An admin blocked this account (role.is_blocked); only an admin can unblock it.';
  end if;
  if v_type <> 'user' then
    raise exception using errcode = 'RS003',
      message = pg_catalog.format('member role %L is not a user (%s)', member_foreign_id, v_type),
      hint = 'Only roles of type ''user'' log in; the identity provider''s subject collides with a group or system role.';
  end if;

  -- The user's own fields, as the line's code would set them; written once, below.
  is_admin := case when admin_rule = 'recompute' then auto_admin or admin_group else v_is_admin or admin_group end;
  v_set_admin := case when is_admin is distinct from v_is_admin then is_admin end;
  if update_name then
    v_new_name := coalesce(nullif(member_name, ''), nullif(member_email, ''));
    if v_new_name is not null and v_new_name is distinct from v_name then
      v_set_name := v_new_name;
    end if;
  end if;
  if email_rule = 'replace' and not member_created and nullif(member_email, '') is distinct from v_email
     and nullif(member_email, '') is not null then
    v_set_email := member_email;
  end if;

  -- The groups: the missing ones created (in name order, so two creators never wait on each other in turn).
  with new_groups as (
    insert into public.role as g (foreign_id, name, type, is_admin, is_muted, is_blocked, is_tester,
                                  created_at, updated_at, api_key)
    select n, case when left(n, 6) = 'group:' then substr(n, 7) else n end, 'group', false, false, false, false,
           v_now, v_now, api_keys[1 + pg_catalog.array_position(group_foreign_ids, n)]
      from pg_catalog.unnest(v_names) as n
     where not exists (select from public.role r where r.foreign_id = n)
     order by 1
    on conflict (foreign_id) do nothing
    returning g.foreign_id
  )
  select array(select g.foreign_id from new_groups g order by g.foreign_id) into created;

  -- A fresh snapshot: it sees the groups concurrent creators committed.
  select array(select r.id from public.role r
                where r.foreign_id = any (v_names) and r.deleted_at is null and r.type = 'group'),
         array(select r.foreign_id::text from public.role r
                where r.foreign_id = any (v_names) and r.deleted_at is not null
                order by r.foreign_id),
         array(select pg_catalog.format('%L (%s)', r.foreign_id, r.type) from public.role r
                where r.foreign_id = any (v_names) and r.deleted_at is null and r.type <> 'group'
                order by r.foreign_id)
    into v_target, skipped, v_not_groups;
  if pg_catalog.cardinality(v_not_groups) > 0 then
    raise exception using errcode = 'RS003',
      message = pg_catalog.format('names belong to roles that are not groups: %s', rolesync.format_list(v_not_groups)),
      hint = 'A user or system role has this foreign id; rename the group at the identity provider.';
  end if;

  -- The member lock and the sync: sync_role_memberships(), same guarantees.
  select s.added, s.removed into v_added, v_removed
    from public.sync_role_memberships(member_id, v_target, managed_prefix) s;
  added := array(select r.foreign_id::text from public.role r where r.id = any (v_added) order by r.foreign_id);
  removed := array(select r.foreign_id::text from public.role r where r.id = any (v_removed) order by r.foreign_id);

  -- One write to the user's row, already locked: what changed, and updated_at per the touch rule.
  if not member_created
     and (v_set_admin is not null or v_set_name is not null or v_set_email is not null
          or touch = 'always'
          or (touch = 'on_change' and not v_touched
              and (pg_catalog.cardinality(v_added) > 0 or pg_catalog.cardinality(v_removed) > 0))) then
    update public.role r
       set is_admin = coalesce(v_set_admin, r.is_admin),
           name = coalesce(v_set_name, r.name),
           email = coalesce(v_set_email, r.email),
           updated_at = case when touch = 'always' or v_set_name is not null or v_set_email is not null
                               or v_touched or pg_catalog.cardinality(v_added) > 0
                               or pg_catalog.cardinality(v_removed) > 0
                             then v_now else r.updated_at end
     where r.id = member_id;
  elsif member_created and v_set_admin is not null then
    update public.role r set is_admin = v_set_admin where r.id = member_id;
  end if;
end;
$$;
comment on function public.sync_aleph_login(text, text, text, text[], boolean, boolean, boolean, text, boolean, text, text, text[], text) is
  'Aleph''s OAuth login (4.1 and OpenAleph 5) in one call, lock first: finds, re-keys (OAUTH_MIGRATE_SUB), creates or refuses the user, applies the line''s admin, name and email rules, syncs its groups; returns (member_id, member_created, is_admin, added, removed, created, skipped).';

revoke all on function public.sync_aleph_login(text, text, text, text[], boolean, boolean, boolean, text, boolean, text, text, text[], text) from public;
grant execute on function public.sync_aleph_login(text, text, text, text[], boolean, boolean, boolean, text, boolean, text, text, text[], text) to :ROLESYNC_APP_ROLE;
-- The login writes these (the function runs as its caller); FOR NO KEY UPDATE needs an UPDATE privilege too.
grant update (foreign_id, name, email, is_admin, api_key, updated_at) on table public.role to :ROLESYNC_APP_ROLE;

/*
 * As in 000009, with the foreign-id lock first: it inserted a new user
 * before it took any lock, so two first logins of one user raced to insert,
 * and a write to role before the call could deadlock with another login.
 * Everything else as it was. Volatile: it writes.
 */
create or replace function public.sync_oauth_login(
  member_foreign_id text,
  member_name text,
  member_email text,
  group_foreign_ids text[],
  managed_prefix text default 'group:',
  out member_id integer,
  out member_created boolean,
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
  v_email text := nullif(member_email, '');
  v_max_length integer;
  v_deleted boolean;
  v_blocked boolean;
  v_type text;
  v_stored_email text;
begin
  if member_foreign_id is null or group_foreign_ids is null or managed_prefix is null then
    raise exception using errcode = '22004',
      message = format('sync_oauth_login: %s must not be null',
                       case when member_foreign_id is null then 'member_foreign_id'
                            when group_foreign_ids is null then 'group_foreign_ids'
                            else 'managed_prefix' end),
      hint = 'Pass an empty array to remove every managed membership; pass '''' to manage every group. '
             'member_name and member_email may be NULL.';
  end if;
  if member_foreign_id = '' then
    raise exception using errcode = '22023',
      message = 'sync_oauth_login: member_foreign_id must not be empty';
  end if;
  -- The limit is role.foreign_id's own: varchar(2048) in Aleph.
  select a.atttypmod - 4 into v_max_length
    from pg_catalog.pg_attribute a
   where a.attrelid = 'public.role'::regclass and a.attname = 'foreign_id' and a.atttypmod > 4;
  if length(member_foreign_id) > v_max_length then
    raise exception using errcode = '22001',
      message = format('member foreign id longer than %s characters: %s… (%s characters)',
                       v_max_length, left(member_foreign_id, 40), length(member_foreign_id)),
      hint = 'role.foreign_id cannot hold it; shorten the subject at the identity provider.';
  end if;

  -- The foreign-id lock (sync_aleph_login's): the user's logins one after another, before any insert.
  perform pg_catalog.pg_advisory_xact_lock(1919904870, pg_catalog.hashtext(member_foreign_id));

  member_created := false;
  select r.id into member_id from public.role r where r.foreign_id = member_foreign_id;
  if member_id is null then
    insert into public.role (foreign_id, name, email, type, is_admin, is_muted, is_blocked, is_tester,
                             created_at, updated_at)
    values (member_foreign_id, coalesce(nullif(member_name, ''), v_email, member_foreign_id), v_email,
            'user', false, false, false, false, now() at time zone 'utc', now() at time zone 'utc')
    on conflict (foreign_id) do nothing
    returning id into member_id;
    member_created := member_id is not null;
    if not member_created then
      select r.id into member_id from public.role r where r.foreign_id = member_foreign_id;
      if member_id is null then
        raise exception using errcode = '40001',
          message = format('member role %L was created by a concurrent login after this transaction''s snapshot',
                           member_foreign_id),
          hint = 'Retry the whole transaction: a fresh snapshot finds the role.';
      end if;
    end if;
  end if;

  -- The member lock, held until commit.
  perform pg_catalog.pg_advisory_xact_lock(1919904869, member_id);

  if not member_created then
    select r.deleted_at is not null, r.is_blocked, r.type::text, r.email
      into v_deleted, v_blocked, v_type, v_stored_email
      from public.role r where r.id = member_id;
    if v_deleted or v_deleted is null then
      raise exception using errcode = 'RS001',
        message = format('member role %L %s', member_foreign_id,
                         case when v_deleted then 'is soft-deleted' else 'does not exist' end),
        hint = 'A soft-deleted role cannot log in; an admin restores it by clearing deleted_at.';
    end if;
    if v_blocked then
      raise exception using errcode = 'RS006',
        message = format('member role %L is blocked', member_foreign_id),
        hint = 'An admin blocked this account (role.is_blocked); only an admin can unblock it.';
    end if;
    if v_type <> 'user' then
      raise exception using errcode = 'RS003',
        message = format('member role %L is not a user (%s)', member_foreign_id, v_type),
        hint = 'Only roles of type ''user'' log in; the identity provider''s subject collides with a group or system role.';
    end if;
    if v_email is not null and v_email is distinct from v_stored_email then
      update public.role r
         set email = v_email, updated_at = now() at time zone 'utc'
       where r.id = member_id;
    end if;
  end if;

  select s.added, s.removed, s.created, s.skipped
    into added, removed, created, skipped
    from public.sync_role_memberships_by_foreign_id(member_foreign_id, group_foreign_ids, managed_prefix) s;
end;
$$;

/*
 * As in 000016, with the key's detail per Alembic line and the privileges
 * sync_aleph_login() needs. Stable: it only reads. For the owner: no grant.
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
  v_line text := rolesync.alembic_line();
  v_keys bigint;
  v_nullable boolean;
  v_copies bigint := 0;
  v_null_rows bigint := 0;
  v_invalid text;
  v_count bigint;
  v_list text;
  v_altered text;
  v_enabled "char";
  v_missing text;
  v_changed text;
  v_app_role text;
  v_lacks text[];
  v_grants text[];
begin
  check_name := 'primary_key';
  ok := v_key is not null;
  count := null;
  detail := case
    when v_key = 'rolesync_role_membership_key' then
      'keyed by rolesync_role_membership_key (UNIQUE (member_id, group_id)); ' ||
      case v_line
        when 'aleph-before-4.1' then 'Aleph''s 4.1 upgrade adds role_membership_pkey'
        when 'openaleph' then 'OpenAleph''s Alembic adds no key of its own: this one stays'
        when 'unknown' then 'the Alembic revision is not one rolesync knows: no one else is expected to key the table, so this one stays'
        else 'no one else keys the table: this one stays' end
    when v_key is not null then pg_catalog.format('%s (member_id, group_id) is in place', v_key)
    else 'role_membership has no key: concurrent logins can store a pair twice' end;
  hint := case when v_key is null then 'Run `rolesync migrate`: it cleans the table and adds the key online.' end;
  return next;

  select pg_catalog.count(*) into v_keys
    from pg_catalog.pg_constraint c
   where c.conrelid = 'public.role_membership'::regclass
     and (c.contype = 'p' or c.conname = 'rolesync_role_membership_key');
  check_name := 'redundant_key';
  ok := v_keys <= 1;
  count := v_keys;
  detail := case when v_keys > 1
    then 'both a primary key and rolesync_role_membership_key: two unique indexes on (member_id, group_id)'
    else 'one key on (member_id, group_id)' end;
  hint := case when v_keys > 1 then 'Run `rolesync migrate`: it keeps the key Aleph''s Alembic state calls for and drops the other.' end;
  return next;

  -- A key keeps duplicates out; NULL rows only NOT NULL columns (or a validated check) keep out.
  select pg_catalog.bool_or(not a.attnotnull) into v_nullable
    from pg_catalog.pg_attribute a
   where a.attrelid = 'public.role_membership'::regclass and a.attname in ('group_id', 'member_id');
  if v_key is null then
    select coalesce(pg_catalog.sum(d.copies - 1), 0) into v_copies from public.role_membership_duplicates d;
  end if;
  if v_key is null or v_nullable then
    select pg_catalog.count(*) into v_null_rows from public.role_membership m
     where m.group_id is null or m.member_id is null;
  end if;
  check_name := 'duplicates';
  ok := v_copies = 0;
  count := v_copies;
  detail := pg_catalog.format('%s surplus cop%s of stored pairs', v_copies, case when v_copies = 1 then 'y' else 'ies' end);
  hint := case when v_copies > 0 then 'Run `rolesync migrate` (or `rolesync dedupe`): copies are archived in rolesync.role_membership_removed.' end;
  return next;

  check_name := 'null_rows';
  ok := v_null_rows = 0;
  count := v_null_rows;
  detail := pg_catalog.format('%s row(s) with a NULL group_id or member_id', v_null_rows);
  hint := case when v_null_rows > 0 then 'Run `rolesync dedupe` (or `rolesync migrate` on a table without a key): NULL rows are archived in rolesync.role_membership_removed.' end;
  return next;

  select pg_catalog.string_agg(i.indexrelid::regclass::text, ', ' order by i.indexrelid::regclass::text), pg_catalog.count(*)
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

  select pg_catalog.count(*) into v_count
    from public.role_membership m
    join public.role r on r.id = m.member_id
   where r.deleted_at is not null;
  check_name := 'soft_deleted_members';
  ok := v_count = 0;
  count := v_count;
  detail := pg_catalog.format('%s membership(s) of soft-deleted members', v_count);
  hint := case when v_count > 0 then 'They grant nothing but linger: DELETE FROM role_membership m USING role r WHERE r.id = m.member_id AND r.deleted_at IS NOT NULL.' end;
  return next;

  select pg_catalog.count(*) into v_count
    from public.role_membership m
    join public.role r on r.id = m.group_id
   where r.deleted_at is not null;
  check_name := 'soft_deleted_groups';
  ok := v_count = 0;
  count := v_count;
  detail := pg_catalog.format('%s membership(s) in soft-deleted groups', v_count);
  hint := case when v_count > 0 then 'Each member''s next sync removes them; to remove them now: DELETE FROM role_membership m USING role r WHERE r.id = m.group_id AND r.deleted_at IS NOT NULL.' end;
  return next;

  -- The ledger, against the migrations this function's migration knows (up to 000018, which follows it).
  select pg_catalog.string_agg(k.filename, ', ' order by k.filename)
         filter (where not exists (select from rolesync.migrations m where m.filename = k.filename)),
         pg_catalog.string_agg(k.filename, ', ' order by k.filename)
         filter (where exists (select from rolesync.migrations m where m.filename = k.filename and k.hash is not null and m.hash <> k.hash))
    into v_missing, v_altered
    from (values ('000001.sql', 'sha1:717e76975d9ec75be858f9e2f3cf99c369bbd621'),
                 ('000002.sql', 'sha1:c43bb22fb421787ced09bc7d8e7954f8dd881237'),
                 ('000003.sql', 'sha1:f4e604337f53fa88f1085205c121410fd49bf5eb'),
                 ('000004.sql', 'sha1:85165da6d6f09b5554405f30db278794b3c3ac7b'),
                 ('000005.sql', 'sha1:5e7d8404a027c1bee55a546374f4d7b73f19267d'),
                 ('000006.sql', 'sha1:d076ac347e81b8bd07841a13f69dee9892e74f96'),
                 ('000007.sql', 'sha1:2d0bc14d42bbb1f643859cffc4310db34c1f399f'),
                 ('000008.sql', 'sha1:44d885afff2e3c6b95c44eeabe06accbc89c2c52'),
                 ('000009.sql', 'sha1:fe8da1ab84b7b8a4949a4d2fcd0a63c254c8edbc'),
                 ('000010.sql', 'sha1:5de566052b0ff402d579be60bfcb14c54fc22561'),
                 ('000011.sql', 'sha1:f30e2a6db218f543b0bcc4065d51cae5e36ce44d'),
                 ('000012.sql', 'sha1:8f5ad9bce21febeb7addb367164a01223c104a81'),
                 ('000013.sql', 'sha1:628e0cf94977610d4cdd14fb5d5b24928f2a941e'),
                 ('000014.sql', 'sha1:ca7d6e2dd6fda6d85c0c391ea5c2b566f7d3d80f'),
                 ('000015.sql', 'sha1:2ea9a9c90c3fb2a5bf91380de545a9e478906795'),
                 ('000016.sql', 'sha1:ad241bef498fc379df13fc3ecd0cc4151fe6ef04'),
                 ('000017.sql', null),
                 ('000018.sql', null)) as k(filename, hash);
  select pg_catalog.count(*), pg_catalog.max(m.filename) into v_count, v_list from rolesync.migrations m;
  check_name := 'migrations';
  ok := v_missing is null and v_altered is null;
  count := v_count;
  detail := case
    when v_missing is not null then pg_catalog.format('rolesync.migrations lacks %s: an interrupted or older install', v_missing)
    when v_altered is not null then pg_catalog.format('rolesync.migrations holds %s with another hash than rolesync''s', v_altered)
    else pg_catalog.format('%s migrations applied, up to %s', v_count, v_list) end;
  hint := case
    when v_missing is not null then 'Run `rolesync migrate` (or rolesync.sql with psql): it applies what is missing.'
    when v_altered is not null then 'The ledger was edited: compare rolesync.migrations with the migrations of the rolesync version that installed it.' end;
  return next;

  select t.tgenabled into v_enabled
    from pg_catalog.pg_trigger t
   where t.tgrelid = 'public.role_membership'::regclass and t.tgname = 'role_membership_guard' and not t.tgisinternal;
  check_name := 'guard_trigger';
  ok := v_enabled is not null and v_enabled <> 'D';
  count := null;
  detail := case
    when v_enabled is null then 'role_membership_guard is missing: writers that bypass the sync can store duplicates again'
    when v_enabled = 'D' then 'role_membership_guard is disabled: writers that bypass the sync can store duplicates again'
    else 'role_membership_guard is in place: every insert takes its member''s lock' end;
  hint := case
    when v_enabled is null then 'Reinstall: `rolesync uninstall`, then `rolesync migrate` (the key and the archive are kept).'
    when v_enabled = 'D' then 'ALTER TABLE public.role_membership ENABLE TRIGGER role_membership_guard;' end;
  return next;

  select pg_catalog.string_agg(f.function, ', ' order by f.function)
         filter (where pg_catalog.to_regprocedure(f.function) is null),
         pg_catalog.string_agg(f.function, ', ' order by f.function)
         filter (where pg_catalog.to_regprocedure(f.function) is not null
                   and rolesync.function_fingerprint(pg_catalog.to_regprocedure(f.function)) is distinct from f.fingerprint),
         pg_catalog.count(*)
    into v_missing, v_changed, v_count
    from rolesync.function_fingerprints f;
  check_name := 'functions';
  ok := v_missing is null and v_changed is null;
  count := v_count;
  detail := case
    when v_missing is not null or v_changed is not null then
      pg_catalog.concat_ws('; ', 'missing: ' || v_missing, 'changed since its migration: ' || v_changed)
      || ': a login that calls one fails'
    else pg_catalog.format('%s functions as their migrations made them', v_count) end;
  hint := case when not ok then
    'Reinstall: `rolesync uninstall`, then `rolesync migrate` (the key and the archive are kept).' end;
  return next;

  select i.app_role into v_app_role from rolesync.installation i;
  if v_app_role is not null and pg_catalog.to_regrole(pg_catalog.quote_ident(v_app_role)) is not null then
    select array_agg(x.what order by x.n, x.what), array_agg(x.grant_sql order by x.n, x.what)
      into v_lacks, v_grants
      from (
        select 1 as n, 'EXECUTE on ' || f.function as what,
               pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %I;', f.function, v_app_role) as grant_sql
          from rolesync.function_fingerprints f
         where f.app_calls and pg_catalog.to_regprocedure(f.function) is not null
           and not pg_catalog.has_function_privilege(v_app_role, pg_catalog.to_regprocedure(f.function), 'EXECUTE')
        union all
        select 2, 'USAGE on schema rolesync', pg_catalog.format('GRANT USAGE ON SCHEMA rolesync TO %I;', v_app_role)
         where not pg_catalog.has_schema_privilege(v_app_role, 'rolesync', 'USAGE')
        union all
        select 3, p.privilege || ' on ' || p.object,
               pg_catalog.format('GRANT %s ON %s TO %I;', p.privilege, p.object, v_app_role)
          from (values ('SELECT', 'public.role'), ('INSERT', 'public.role'),
                       ('SELECT', 'public.role_membership'), ('INSERT', 'public.role_membership'),
                       ('DELETE', 'public.role_membership'),
                       ('SELECT', 'rolesync.role_membership_version'), ('INSERT', 'rolesync.role_membership_version'),
                       ('UPDATE', 'rolesync.role_membership_version')) as p(privilege, object)
         where pg_catalog.to_regclass(p.object) is not null
           and not pg_catalog.has_table_privilege(v_app_role, p.object, p.privilege)
        union all
        select 4, 'UPDATE (' || c.col || ') on public.role',
               pg_catalog.format('GRANT UPDATE (%I) ON public.role TO %I;', c.col, v_app_role)
          from (values ('email'), ('updated_at'), ('foreign_id'), ('name'), ('is_admin'), ('api_key')) as c(col)
         where exists (select from pg_catalog.pg_attribute a
                        where a.attrelid = 'public.role'::regclass and a.attname = c.col and not a.attisdropped)
           and not pg_catalog.has_column_privilege(v_app_role, 'public.role', c.col, 'UPDATE')
        union all
        select 5, 'USAGE on public.role_id_seq', pg_catalog.format('GRANT USAGE ON SEQUENCE public.role_id_seq TO %I;', v_app_role)
         where pg_catalog.to_regclass('public.role_id_seq') is not null
           and not pg_catalog.has_sequence_privilege(v_app_role, 'public.role_id_seq', 'USAGE')
      ) x;
  end if;
  check_name := 'app_role_privileges';
  ok := v_app_role is not null and pg_catalog.to_regrole(pg_catalog.quote_ident(v_app_role)) is not null and v_lacks is null;
  count := pg_catalog.cardinality(v_lacks);
  detail := case
    when v_app_role is null then 'no application role is recorded (rolesync.installation)'
    when pg_catalog.to_regrole(pg_catalog.quote_ident(v_app_role)) is null
      then pg_catalog.format('the application role %I, recorded at migrate time, no longer exists', v_app_role)
    when v_lacks is not null
      then pg_catalog.format('the application role %I lacks %s: its logins fail (42501)', v_app_role,
                             rolesync.format_list(v_lacks))
    else pg_catalog.format('the application role %I has what the functions need', v_app_role) end;
  hint := case
    when v_app_role is null or pg_catalog.to_regrole(pg_catalog.quote_ident(v_app_role)) is null
      then 'Reinstall for the role your application connects as: `rolesync uninstall`, then `rolesync migrate --app-role <role>`.'
    when v_lacks is not null then pg_catalog.array_to_string(v_grants, ' ') end;
  return next;

  check_name := 'group_index';
  ok := exists (select from pg_catalog.pg_index i
                 where i.indexrelid = pg_catalog.to_regclass('public.role_membership_group_id_member_id_idx')
                   and i.indrelid = 'public.role_membership'::regclass);
  count := null;
  detail := case when ok then 'role_membership_group_id_member_id_idx (group_id, member_id) is in place'
                 else 'role_membership_group_id_member_id_idx is missing: member listings and the guard''s lookup scan the table' end;
  hint := case when not ok then
    'CREATE INDEX CONCURRENTLY role_membership_group_id_member_id_idx ON public.role_membership (group_id, member_id); '
    'Alembic''s autogenerate proposes dropping it: docs/aleph.md has the include_object filter.' end;
  return next;
end;
$$;

revoke all on function public.role_membership_check() from public;

-- Watched by check from now on, with the restated sync_oauth_login's new fingerprint.
insert into rolesync.function_fingerprints (function, app_calls)
values ('public.sync_aleph_login(text, text, text, text[], boolean, boolean, boolean, text, boolean, text, text, text[], text)', true)
on conflict (function) do nothing;
select rolesync.record_fingerprints();
-- The privileges granted above, where the application role lacked them.
select rolesync.record_grants();
