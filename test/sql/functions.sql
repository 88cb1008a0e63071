-- Signatures, volatility, security and privileges of every function.
begin;
set local search_path = public, tap;
select plan(56);

select has_function('public', 'sync_role_memberships', array['integer', 'integer[]', 'text'],
  'sync_role_memberships(integer, integer[], text) exists');
select is(
  pg_catalog.pg_get_function_result('public.sync_role_memberships(integer, integer[], text)'::regprocedure),
  'record', 'sync_role_memberships returns one record');
select is(
  pg_catalog.pg_get_function_arguments('public.sync_role_memberships(integer, integer[], text)'::regprocedure),
  'role_id integer, group_ids integer[], managed_prefix text DEFAULT NULL::text, OUT added integer[], OUT removed integer[]',
  'sync_role_memberships takes (role_id, group_ids[, managed_prefix]) and returns (added, removed)');
select ok(
  not (select proretset from pg_catalog.pg_proc
        where oid = 'public.sync_role_memberships(integer, integer[], text)'::regprocedure),
  'sync_role_memberships returns exactly one row, not a set');
select has_function('public', 'dedupe_role_memberships', array[]::text[], 'dedupe_role_memberships() exists');
select function_returns('public', 'dedupe_role_memberships', array[]::text[], 'bigint',
  'dedupe_role_memberships returns the number of rows removed');
select has_function('public', 'role_membership_guard', array[]::text[], 'the guard trigger function exists');
select function_returns('public', 'role_membership_guard', array[]::text[], 'trigger',
  'role_membership_guard is a trigger function');

select volatility_is('public', 'sync_role_memberships', array['integer', 'integer[]', 'text'], 'volatile',
  'sync_role_memberships is volatile: it writes, and needs a fresh snapshot per statement');
select volatility_is('public', 'dedupe_role_memberships', array[]::text[], 'volatile', 'dedupe is volatile');
select volatility_is('public', 'role_membership_guard', array[]::text[], 'volatile', 'the guard is volatile');

select isnt_definer('public', 'sync_role_memberships', array['integer', 'integer[]', 'text'], 'sync runs as the caller');
select isnt_definer('public', 'dedupe_role_memberships', array[]::text[], 'dedupe runs as the caller');
select isnt_definer('public', 'role_membership_guard', array[]::text[], 'the guard runs as the caller');

select is(
  (select proconfig from pg_catalog.pg_proc where oid = 'public.sync_role_memberships(integer, integer[], text)'::regprocedure),
  array['search_path=pg_catalog, pg_temp']
    || case when current_setting('server_version_num')::integer >= 120000
            then array['plan_cache_mode=force_generic_plan'] else '{}' end,
  'sync pins search_path, and plans its statements once per session (generic plans, PostgreSQL 12+)');
select is(
  (select proconfig from pg_catalog.pg_proc where oid = 'public.dedupe_role_memberships()'::regprocedure),
  array['search_path=pg_catalog, pg_temp'], 'dedupe pins search_path');
select is(
  (select proconfig from pg_catalog.pg_proc where oid = 'public.role_membership_guard()'::regprocedure),
  array['search_path=pg_catalog, pg_temp'], 'the guard pins search_path');

select has_function('public', 'sync_role_memberships_by_foreign_id', array['text', 'text[]', 'text'],
  'sync_role_memberships_by_foreign_id(text, text[], text) exists');
select is(
  pg_catalog.pg_get_function_arguments('public.sync_role_memberships_by_foreign_id(text, text[], text)'::regprocedure),
  'member_foreign_id text, group_foreign_ids text[], managed_prefix text DEFAULT ''group:''::text, OUT added integer[], OUT removed integer[], OUT created integer[], OUT skipped integer[]',
  'by_foreign_id takes (member, groups[, prefix = ''group:'']) and returns (added, removed, created, skipped)');
select volatility_is('public', 'sync_role_memberships_by_foreign_id', array['text', 'text[]', 'text'], 'volatile',
  'by_foreign_id is volatile: it writes');
select isnt_definer('public', 'sync_role_memberships_by_foreign_id', array['text', 'text[]', 'text'],
  'by_foreign_id runs as the caller');
select is(
  (select proconfig from pg_catalog.pg_proc where oid = 'public.sync_role_memberships_by_foreign_id(text, text[], text)'::regprocedure),
  array['search_path=pg_catalog, pg_temp']
    || case when current_setting('server_version_num')::integer >= 120000
            then array['plan_cache_mode=force_generic_plan'] else '{}' end,
  'by_foreign_id pins search_path, generic plans (PostgreSQL 12+)');
select function_privs_are('public', 'sync_role_memberships_by_foreign_id', array['text', 'text[]', 'text'], 'rolesync_app',
  array['EXECUTE'], 'the application role may sync by foreign id');

-- rolesync's own functions (000012), in its own schema.
select functions_are('rolesync', array['alembic_line', 'aleph_adds_primary_key', 'format_list', 'function_fingerprint',
                                       'record_fingerprints', 'record_grants', 'role_membership_dirt', 'role_membership_key'],
  'schema rolesync holds exactly its eight functions (format_list: 000013, tested in messages.sql; role_membership_dirt: 000015, in role_membership_dirt.sql; the 000016 three in own_state.sql; alembic_line: 000017, in sync_aleph_login.sql)');
select function_returns('rolesync', 'aleph_adds_primary_key', array[]::text[], 'boolean',
  'aleph_adds_primary_key() answers yes or no');
select function_returns('rolesync', 'role_membership_key', array[]::text[], 'name',
  'role_membership_key() returns the name of the constraint keying role_membership');
select volatility_is('rolesync', 'aleph_adds_primary_key', array[]::text[], 'stable',
  'aleph_adds_primary_key is stable: it only reads');
select volatility_is('rolesync', 'role_membership_key', array[]::text[], 'stable',
  'role_membership_key is stable: it only reads the catalog');
select isnt_definer('rolesync', 'aleph_adds_primary_key', array[]::text[], 'aleph_adds_primary_key runs as the caller');
select isnt_definer('rolesync', 'role_membership_key', array[]::text[], 'role_membership_key runs as the caller');
select is(
  (select proconfig from pg_catalog.pg_proc where oid = 'rolesync.aleph_adds_primary_key()'::regprocedure),
  array['search_path=pg_catalog, pg_temp'], 'aleph_adds_primary_key pins search_path');
select is(
  (select proconfig from pg_catalog.pg_proc where oid = 'rolesync.role_membership_key()'::regprocedure),
  array['search_path=pg_catalog, pg_temp'], 'role_membership_key pins search_path');
select is(rolesync.aleph_adds_primary_key(), false,
  'without Aleph''s Alembic ledger (public.alembic_version) no one else adds a key');
select is(rolesync.role_membership_key(), 'role_membership_pkey'::name,
  'the primary key keys role_membership here');
-- Only their owner may run them: no grant to anyone else, PUBLIC included.
select is_empty(
  $$select p.oid::regprocedure, a.grantee::regrole from pg_catalog.pg_proc p,
           pg_catalog.aclexplode(coalesce(p.proacl, pg_catalog.acldefault('f', p.proowner))) a
     where p.pronamespace = 'rolesync'::regnamespace and a.grantee <> p.proowner
       and p.oid <> 'rolesync.format_list(text[], integer)'::regprocedure$$,
  'rolesync''s functions are for their owner only, but format_list, which the syncs call to raise (messages.sql)');

-- No dynamic SQL anywhere: no EXECUTE statement in any function body (comments and string literals
-- aside: role_membership_check() names the EXECUTE privilege in its messages).
select is_empty(
  $$select p.oid::regprocedure from pg_catalog.pg_proc p
     where p.pronamespace in ('public'::regnamespace, 'rolesync'::regnamespace)
       and p.prolang = (select oid from pg_catalog.pg_language where lanname = 'plpgsql')
       and pg_catalog.regexp_replace(pg_catalog.regexp_replace(p.prosrc, '--[^\n]*', '', 'g'),
                                     '''([^'']|'''')*''', '', 'g') ~* '\mexecute\M'$$,
  'no function uses dynamic SQL');

-- EXECUTE: nothing for PUBLIC; the app role may sync and nothing else.
select is_empty(
  $$select p.oid::regprocedure from pg_catalog.pg_proc p, pg_catalog.aclexplode(coalesce(p.proacl, pg_catalog.acldefault('f', p.proowner))) a
     where p.pronamespace in ('public'::regnamespace, 'rolesync'::regnamespace) and a.grantee = 0$$,
  'PUBLIC may execute none of the functions');
create role rolesync_test_nobody;
select function_privs_are('rolesync', 'role_membership_key', array[]::text[], 'rolesync_app', array[]::text[],
  'the application role may not run role_membership_key()');
select function_privs_are('rolesync', 'aleph_adds_primary_key', array[]::text[], 'rolesync_app', array[]::text[],
  'the application role may not run aleph_adds_primary_key()');
select function_privs_are('rolesync', 'role_membership_key', array[]::text[], 'rolesync_test_nobody', array[]::text[],
  'a role without grants may not run role_membership_key()');
-- Schema rolesync: USAGE for the application role (its sync writes the version table), nothing for others.
select schema_privs_are('rolesync', 'rolesync_app', array['USAGE'],
  'the application role may use schema rolesync, and not create in it');
select schema_privs_are('rolesync', 'rolesync_test_nobody', array[]::text[],
  'a role without grants may not use schema rolesync');
select is_empty(
  $$select a.privilege_type from pg_catalog.pg_namespace n,
           pg_catalog.aclexplode(coalesce(n.nspacl, pg_catalog.acldefault('n', n.nspowner))) a
     where n.nspname = 'rolesync' and a.grantee = 0$$,
  'PUBLIC has no privilege on schema rolesync');
select function_privs_are('public', 'sync_role_memberships', array['integer', 'integer[]', 'text'], 'rolesync_test_nobody',
  array[]::text[], 'a role without grants cannot sync');
select function_privs_are('public', 'sync_role_memberships', array['integer', 'integer[]', 'text'], 'rolesync_app',
  array['EXECUTE'], 'the application role may sync');
select function_privs_are('public', 'dedupe_role_memberships', array[]::text[], 'rolesync_app',
  array[]::text[], 'the application role may not dedupe');
select table_privs_are('public', 'role', 'rolesync_app', array['INSERT', 'SELECT'],
  'the application role reads role, and inserts new groups (by foreign id)');
select sequence_privs_are('public', 'role_id_seq', 'rolesync_app', array['USAGE'],
  'the application role may draw ids for new groups');
select table_privs_are('public', 'role_membership', 'rolesync_app', array['DELETE', 'INSERT', 'SELECT'],
  'the application role reads, inserts and deletes memberships: what sync needs as invoker');
select table_privs_are('rolesync', 'role_membership_version', 'rolesync_app', array['INSERT', 'SELECT', 'UPDATE'],
  'the application role bumps member versions (the grants moved with the table)');
select table_privs_are('rolesync', 'role_membership_removed', 'rolesync_app', array[]::text[],
  'the archive is for operators only');
select table_privs_are('public', 'role_membership_duplicates', 'rolesync_app', array['SELECT'],
  'the application role may watch for duplicates');

-- The grants are enough: the application role can really sync.
insert into public.role (id, foreign_id, name, type, is_admin, is_muted, is_blocked, is_tester)
values (900001, 'test:app-user', 'app user', 'user', false, false, false, false),
       (900002, 'test:app-group', 'app group', 'group', false, false, false, false);
-- pgTAP itself is out of the application role's reach, so record what it gets.
create temp table app_outcome (step text, added integer[], removed integer[], sqlstate text);
grant insert on app_outcome to rolesync_app;
set local role rolesync_app;
insert into app_outcome (step, added, removed)
select 'sync', added, removed from public.sync_role_memberships(900001, array[900002]);
do $$
begin
  perform public.dedupe_role_memberships();
  insert into app_outcome (step) values ('dedupe');
exception when others then
  insert into app_outcome (step, sqlstate) values ('dedupe', sqlstate);
end
$$;
reset role;
select results_eq(
  $$select added, removed from app_outcome where step = 'sync'$$,
  $$values (array[900002], array[]::integer[])$$,
  'the application role syncs with only the granted privileges');
select is((select sqlstate from app_outcome where step = 'dedupe'), '42501',
  'the application role cannot run the dedupe');

select function_privs_are('public', 'role_membership_check', array[]::text[], 'rolesync_app',
  array[]::text[], 'the application role may not run the operator check');
select function_lang_is('public', 'sync_role_memberships', array['integer', 'integer[]', 'text'], 'plpgsql',
  'sync is PL/pgSQL: separate statements, so the read after the lock gets a fresh snapshot');

select * from finish();
rollback;
