--! Previous: sha1:2ea9a9c90c3fb2a5bf91380de545a9e478906795
--! Hash: sha1:ad241bef498fc379df13fc3ecd0cc4151fe6ef04
--! Message: own state

/*
 * What rolesync needs to know about itself: for `rolesync uninstall` to
 * take out only what it added, and for `rolesync check` (and
 * role_membership_check(), for operators with psql alone) to tell the truth
 * about rolesync's own state, not only about the table's data.
 *
 * 1. rolesync.installation: the application role this install granted to,
 *    so that check knows whose EXECUTE to test and uninstall whose grants
 *    to look at.
 * 2. rolesync.granted: the privileges on Aleph's objects that a role held
 *    no direct entry for before rolesync granted them (hooks/privileges-before.sql
 *    takes the snapshot; rolesync.record_grants() compares). uninstall
 *    revokes exactly these. Where a migration before this one granted in
 *    an earlier run (an install older than 0.2.0's), there is no snapshot
 *    to compare with: installation.grants_recorded is false, and uninstall
 *    revokes only on rolesync's own objects.
 * 3. rolesync.function_fingerprints: a fingerprint of each function Aleph
 *    calls (and of the guard's), as its migration made it, so that check
 *    notices one dropped or replaced by hand. rolesync.record_fingerprints()
 *    takes them; every later migration that restates one calls it.
 * 4. role_membership_check(), restated with the checks of rolesync itself.
 *
 * No locks beyond the catalog's and the new tables': logins go on.
 */
set local lock_timeout = '1s';

/*
 * One row: the application role this install granted to (:ROLESYNC_APP_ROLE),
 * and whether rolesync.granted is complete. Why a table: check runs later,
 * from cron, as another role; only the install knows which role the
 * application connects as.
 */
create table if not exists rolesync.installation (
  singleton boolean primary key default true check (singleton),
  app_role text not null,
  grants_recorded boolean not null,
  recorded_at timestamptz not null default now()
);
comment on table rolesync.installation is
  'The application role rolesync granted to, and whether rolesync.granted lists every privilege rolesync granted on Aleph''s objects.';

/*
 * Each privilege on Aleph's objects that rolesync's migrations granted and
 * the grantee did not hold before (no direct ACL entry, ownership included):
 * what `rolesync uninstall` revokes, and nothing else.
 */
create table if not exists rolesync.granted (
  grantee text not null,
  object text not null,
  column_name text not null default '',
  privilege text not null,
  recorded_at timestamptz not null default now(),
  primary key (grantee, object, column_name, privilege)
);
comment on table rolesync.granted is
  'Privileges rolesync granted on Aleph''s objects that the grantee lacked before: what rolesync uninstall revokes. column_name is '''' for the whole object.';

/*
 * Records in rolesync.granted every direct ACL entry on Aleph's objects that
 * is there now and was not when this session's hooks ran (their snapshot,
 * hooks/privileges-before.sql); a session without the snapshot records
 * nothing. Returns whether the snapshot predates rolesync's first grants,
 * i.e. whether the record covers every grant rolesync made. Volatile: it
 * writes. For the owner who migrates: no grant.
 */
create or replace function rolesync.record_grants()
returns boolean
language plpgsql
volatile
security invoker
set search_path = pg_catalog, pg_temp
as $$
begin
  if pg_catalog.to_regclass('pg_temp.rolesync_privileges_before') is null
     or pg_catalog.to_regclass('pg_temp.rolesync_snapshot') is null
     or pg_catalog.to_regprocedure('pg_temp.rolesync_acl_entries()') is null then
    return false;
  end if;
  -- Planned at their first run, in a session that has the snapshot: the checks above ran first.
  insert into rolesync.granted (grantee, object, column_name, privilege)
  select r.rolname, e.object, e.column_name, e.privilege
    from pg_temp.rolesync_acl_entries() e
    join pg_catalog.pg_roles r on r.oid = e.grantee
   where not exists (select from pg_temp.rolesync_privileges_before b
                      where b.object = e.object and b.column_name = e.column_name
                        and b.grantee = e.grantee and b.privilege = e.privilege)
  on conflict do nothing;
  return coalesce((select pg_catalog.bool_and(s.before_rolesync) from pg_temp.rolesync_snapshot s), false);
end;
$$;
comment on function rolesync.record_grants() is
  'Records the privileges on Aleph''s objects granted since this session''s snapshot in rolesync.granted; true when the snapshot predates rolesync''s grants.';
revoke all on function rolesync.record_grants() from public;

/*
 * A function's definition as a fingerprint: its body, its settings, its
 * volatility and security, its arguments and its result. Not
 * pg_get_functiondef(), whose spelling changes between majors, so a
 * pg_upgrade would read as a change. Stable: it reads the catalog.
 */
create or replace function rolesync.function_fingerprint(p_function regprocedure)
returns text
language sql
stable
security invoker
set search_path = pg_catalog, pg_temp
as $$
  select pg_catalog.md5(pg_catalog.concat_ws(chr(10), p.prosrc, pg_catalog.array_to_string(p.proconfig, ','),
                                             p.provolatile::text, p.prosecdef::text,
                                             pg_catalog.pg_get_function_identity_arguments(p.oid),
                                             pg_catalog.pg_get_function_result(p.oid)))
    from pg_catalog.pg_proc p
   where p.oid = p_function
$$;
comment on function rolesync.function_fingerprint(regprocedure) is
  'md5 of a function''s body, settings, volatility, security, arguments and result: what role_membership_check() compares.';
revoke all on function rolesync.function_fingerprint(regprocedure) from public;

/*
 * The functions check watches, with their fingerprints as the migrations
 * made them. app_calls: the application calls it, so its role needs EXECUTE
 * (the guard is called by its trigger, which needs none).
 */
create table if not exists rolesync.function_fingerprints (
  function text primary key,
  app_calls boolean not null,
  fingerprint text,
  recorded_at timestamptz not null default now()
);
comment on table rolesync.function_fingerprints is
  'The functions role_membership_check() watches, with their fingerprints as rolesync''s migrations left them.';

insert into rolesync.function_fingerprints (function, app_calls)
values ('public.sync_role_memberships(integer, integer[], text)', true),
       ('public.sync_role_memberships_by_foreign_id(text, text[], text)', true),
       ('public.sync_oauth_login(text, text, text, text[], text)', true),
       ('public.role_membership_guard()', false)
on conflict (function) do nothing;

/*
 * Takes the fingerprint of every watched function as it is now: run by each
 * migration that (re)defines one, after it does. Volatile: it writes.
 */
create or replace function rolesync.record_fingerprints()
returns void
language sql
volatile
security invoker
set search_path = pg_catalog, pg_temp
as $$
  update rolesync.function_fingerprints f
     set fingerprint = rolesync.function_fingerprint(pg_catalog.to_regprocedure(f.function)),
         recorded_at = pg_catalog.now()
$$;
comment on function rolesync.record_fingerprints() is
  'Takes the fingerprints of the functions role_membership_check() watches; each migration that restates one runs it.';
revoke all on function rolesync.record_fingerprints() from public;

select rolesync.record_fingerprints();

/*
 * The application role, as a name: the placeholder is an identifier, and a
 * column alias is one place a plain statement takes an identifier and gives
 * it back as text (the runner and psql both fill placeholders outside
 * quotes only). And whether rolesync.granted is complete.
 */
insert into rolesync.installation (singleton, app_role, grants_recorded)
select true, k.name, rolesync.record_grants()
  from pg_catalog.json_object_keys(pg_catalog.to_json((select t from (select 1 as :ROLESYNC_APP_ROLE) t))) as k(name)
on conflict (singleton) do update
  set app_role = excluded.app_role, grants_recorded = excluded.grants_recorded, recorded_at = pg_catalog.now();

/*
 * What an operator (or cron, or CI) asks: is role_membership keyed and
 * clean, and is rolesync itself whole? As 000012's, with five checks of
 * rolesync's own state, each failing with a hint that says what to run:
 * - migrations: rolesync.migrations lacks one of the migrations up to this
 *   one (an interrupted or older install), or holds one of them with another
 *   hash (an altered ledger). `rolesync check` also compares the ledger with
 *   the package it runs from;
 * - guard_trigger: role_membership_guard missing or disabled: duplicates can
 *   be stored again;
 * - functions: a function the application calls (or the guard's) missing,
 *   or changed since its migration made it: a login calling it fails (42883);
 * - app_role_privileges: the recorded application role lacks EXECUTE on
 *   them, or a table privilege they use (they run as their caller);
 * - group_index: role_membership_group_id_member_id_idx is missing (Alembic's
 *   autogenerate proposes dropping it on Aleph 4.1+).
 * And null_rows counts NULL rows whenever a column allows NULL, not only
 * while the table has no key: a unique key does not keep NULLs out, and
 * OpenAleph's models declare both columns nullable.
 * Stable: it only reads. For the owner: no grant.
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
    when v_key = 'rolesync_role_membership_key'
      then 'keyed by rolesync_role_membership_key (UNIQUE (member_id, group_id)); Aleph''s 4.1 upgrade adds role_membership_pkey'
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

  -- The ledger, against the migrations this function's migration knows (it is the sixteenth).
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
                 ('000016.sql', null)) as k(filename, hash);
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
    select array_agg(x.what order by x.n), array_agg(x.grant_sql order by x.n)
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
          from (values ('email'), ('updated_at')) as c(col)
         where not pg_catalog.has_column_privilege(v_app_role, 'public.role', c.col, 'UPDATE')
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
