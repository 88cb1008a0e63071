-- 000016: what rolesync knows of itself (the application role, the privileges it granted, its
-- functions' fingerprints), and role_membership_check()'s checks of rolesync's own state, each
-- failing on its own damage with a hint. Each damage is undone (ROLLBACK TO SAVEPOINT) before the next.
begin;
set local search_path = public, tap;
select plan(40);

-- The tables.
select columns_are('rolesync', 'installation', array['singleton', 'app_role', 'grants_recorded', 'recorded_at'],
  'installation: the application role, and whether the grant record is complete');
select col_is_pk('rolesync', 'installation', 'singleton', 'installation holds one row');
select columns_are('rolesync', 'granted', array['grantee', 'object', 'column_name', 'privilege', 'recorded_at'],
  'granted: one row per privilege rolesync added');
select col_is_pk('rolesync', 'granted', array['grantee', 'object', 'column_name', 'privilege'], 'each privilege is recorded once');
select columns_are('rolesync', 'function_fingerprints', array['function', 'app_calls', 'fingerprint', 'recorded_at'],
  'function_fingerprints: the functions check watches');
select col_is_pk('rolesync', 'function_fingerprints', 'function', 'each function is watched once');
select table_privs_are('rolesync', 'granted', 'rolesync_app', array[]::text[], 'the application role cannot read what was granted to it');
select table_privs_are('rolesync', 'installation', 'rolesync_app', array[]::text[], 'nor the installation record');

-- What the template's migration recorded: it ran on a new database, so the snapshot predates every grant.
select results_eq('select app_role, grants_recorded from rolesync.installation',
  $$values ('rolesync_app'::text, true)$$, 'the application role the migration granted to, with a complete record');
select set_eq($$select object || case when column_name <> '' then ' (' || column_name || ')' else '' end || ' ' || privilege
                 from rolesync.granted where grantee = 'rolesync_app'$$,
  $$values ('public.role SELECT'), ('public.role INSERT'), ('public.role (email) UPDATE'), ('public.role (updated_at) UPDATE'),
           ('public.role_id_seq USAGE'), ('public.role_membership SELECT'), ('public.role_membership INSERT'),
           ('public.role_membership DELETE'), ('public.role (name) UPDATE'), ('public.role (is_admin) UPDATE'),
           ('public.role (api_key) UPDATE'), ('public.role (foreign_id) UPDATE')$$,
  'every privilege 000001, 000008, 000009 and 000017 granted on Aleph''s objects to a role that had none');
select is_empty($$select * from rolesync.granted where grantee <> 'rolesync_app'$$,
  'nothing recorded for the owner: its privileges were its own');

-- The functions.
select volatility_is('rolesync', 'record_grants', array[]::text[], 'volatile', 'record_grants writes');
select volatility_is('rolesync', 'function_fingerprint', array['regprocedure'], 'stable', 'function_fingerprint reads the catalog');
select volatility_is('rolesync', 'record_fingerprints', array[]::text[], 'volatile', 'record_fingerprints writes');
select is(rolesync.record_grants(), false, 'record_grants() records nothing, and says so, in a session without the snapshot');
select is((select count(*) from rolesync.function_fingerprints where fingerprint is not null), 5::bigint,
  'the four functions the application calls (sync_aleph_login since 000017) and the guard''s are fingerprinted');
select is_empty($$select f.function from rolesync.function_fingerprints f
                  where f.fingerprint is distinct from rolesync.function_fingerprint(pg_catalog.to_regprocedure(f.function))$$,
  'each fingerprint is the function as it is');
select is(rolesync.function_fingerprint('public.sync_role_memberships(integer, integer[], text)'::regprocedure),
          rolesync.function_fingerprint('public.sync_role_memberships(integer, integer[], text)'::regprocedure),
  'a fingerprint is the same each time');
select isnt(rolesync.function_fingerprint('public.sync_role_memberships(integer, integer[], text)'::regprocedure),
            rolesync.function_fingerprint('public.sync_oauth_login(text, text, text, text[], text)'::regprocedure),
  'and differs between functions');

-- Each damage, alone. pgTAP records its results in the transaction, so a ROLLBACK TO SAVEPOINT
-- would forget the tests run after the savepoint: each damage's check row is kept in a psql
-- variable (\gset) across the rollback, and tested after it.
savepoint damage;
delete from rolesync.migrations where filename = '000018.sql';
select to_jsonb(c) - 'check_name' as got from public.role_membership_check() c where check_name = 'migrations' \gset
rollback to savepoint damage;
select is(:'got'::jsonb, '{"ok": false, "count": 17, "detail": "rolesync.migrations lacks 000018.sql: an interrupted or older install", "hint": "Run `rolesync migrate` (or rolesync.sql with psql): it applies what is missing."}'::jsonb,
  'the newest migration missing from the ledger: migrations fails, and says to migrate');

alter table rolesync.migrations drop constraint migrations_previous_hash_fkey;
update rolesync.migrations set hash = 'sha1:edited' where filename = '000003.sql';
select to_jsonb(c) - 'check_name' as got from public.role_membership_check() c where check_name = 'migrations' \gset
rollback to savepoint damage;
select is(:'got'::jsonb ->> 'detail', 'rolesync.migrations holds 000003.sql with another hash than rolesync''s',
  'an edited ledger row: migrations fails');
select ok(not (:'got'::jsonb ->> 'ok')::boolean and :'got'::jsonb ->> 'hint' like 'The ledger was edited%', 'and says so');

alter table public.role_membership disable trigger role_membership_guard;
select to_jsonb(c) - 'check_name' as got from public.role_membership_check() c where check_name = 'guard_trigger' \gset
rollback to savepoint damage;
select is(:'got'::jsonb, '{"ok": false, "count": null, "detail": "role_membership_guard is disabled: writers that bypass the sync can store duplicates again", "hint": "ALTER TABLE public.role_membership ENABLE TRIGGER role_membership_guard;"}'::jsonb,
  'a disabled guard: guard_trigger fails, with the statement that enables it');

drop trigger role_membership_guard on public.role_membership;
select to_jsonb(c) - 'check_name' as got from public.role_membership_check() c where check_name = 'guard_trigger' \gset
rollback to savepoint damage;
select is(:'got'::jsonb, '{"ok": false, "count": null, "detail": "role_membership_guard is missing: writers that bypass the sync can store duplicates again", "hint": "Reinstall: `rolesync uninstall`, then `rolesync migrate` (the key and the archive are kept)."}'::jsonb,
  'a dropped guard: guard_trigger fails, and says how to reinstall it');

drop function public.sync_role_memberships(integer, integer[], text);
select to_jsonb(c) - 'check_name' as got from public.role_membership_check() c where check_name = 'functions' \gset
rollback to savepoint damage;
select is(:'got'::jsonb, '{"ok": false, "count": 5, "detail": "missing: public.sync_role_memberships(integer, integer[], text): a login that calls one fails", "hint": "Reinstall: `rolesync uninstall`, then `rolesync migrate` (the key and the archive are kept)."}'::jsonb,
  'sync_role_memberships dropped by hand: functions fails, naming it');

drop function public.sync_oauth_login(text, text, text, text[], text);
select to_jsonb(c) - 'check_name' as got from public.role_membership_check() c where check_name = 'functions' \gset
rollback to savepoint damage;
select ok(not (:'got'::jsonb ->> 'ok')::boolean and :'got'::jsonb ->> 'detail' like 'missing: public.sync_oauth_login(%',
  'sync_oauth_login dropped: named');

alter function public.sync_role_memberships_by_foreign_id(text, text[], text) security definer;
select to_jsonb(c) - 'check_name' as got from public.role_membership_check() c where check_name = 'functions' \gset
rollback to savepoint damage;
select is(:'got'::jsonb ->> 'detail',
  'changed since its migration: public.sync_role_memberships_by_foreign_id(text, text[], text): a login that calls one fails',
  'a function changed by hand (here made SECURITY DEFINER): functions fails');

alter function public.role_membership_guard() set work_mem = '1MB';
select to_jsonb(c) - 'check_name' as got from public.role_membership_check() c where check_name = 'functions' \gset
rollback to savepoint damage;
select ok(not (:'got'::jsonb ->> 'ok')::boolean and :'got'::jsonb ->> 'detail' like '%public.role_membership_guard()%',
  'the guard''s function is watched too');

revoke execute on function public.sync_oauth_login(text, text, text, text[], text) from rolesync_app;
select to_jsonb(c) - 'check_name' as got from public.role_membership_check() c where check_name = 'app_role_privileges' \gset
rollback to savepoint damage;
select is(:'got'::jsonb - 'detail', '{"ok": false, "count": 1, "hint": "GRANT EXECUTE ON FUNCTION public.sync_oauth_login(text, text, text, text[], text) TO rolesync_app;"}'::jsonb,
  'the application role without EXECUTE: app_role_privileges fails, with the GRANT that restores it');
select ok(:'got'::jsonb ->> 'detail' like 'the application role rolesync_app lacks EXECUTE on public.sync_oauth_login(%',
  'naming the role and the function');

revoke delete on public.role_membership from rolesync_app;
revoke update (email) on public.role from rolesync_app;
select to_jsonb(c) - 'check_name' as got from public.role_membership_check() c where check_name = 'app_role_privileges' \gset
rollback to savepoint damage;
select is(:'got'::jsonb - 'detail', '{"ok": false, "count": 2, "hint": "GRANT DELETE ON public.role_membership TO rolesync_app; GRANT UPDATE (email) ON public.role TO rolesync_app;"}'::jsonb,
  'the table privileges the functions use (they run as their caller) are checked too');

update rolesync.installation set app_role = 'rolesync_nobody_here';
select to_jsonb(c) - 'check_name' as got from public.role_membership_check() c where check_name = 'app_role_privileges' \gset
rollback to savepoint damage;
select is(:'got'::jsonb ->> 'detail', 'the application role rolesync_nobody_here, recorded at migrate time, no longer exists',
  'an application role dropped since: app_role_privileges fails');

drop index public.role_membership_group_id_member_id_idx;
select to_jsonb(c) - 'check_name' as got from public.role_membership_check() c where check_name = 'group_index' \gset
rollback to savepoint damage;
select is(:'got'::jsonb ->> 'detail', 'role_membership_group_id_member_id_idx is missing: member listings and the guard''s lookup scan the table',
  'the group index dropped (as Alembic''s autogenerate proposes): group_index fails');
select ok(:'got'::jsonb ->> 'hint' like 'CREATE INDEX CONCURRENTLY role_membership_group_id_member_id_idx ON public.role_membership (group_id, member_id);%',
  'with the statement that builds it again');

-- NULL rows under a unique key, once the columns allow NULL (OpenAleph's models declare them nullable).
insert into public.role (id, foreign_id, name, type, is_admin, is_muted, is_blocked, is_tester)
values (901, 'test:901', 'u', 'user', false, false, false, false), (902, 'group:902', 'g', 'group', false, false, false, false);
alter table public.role_membership drop constraint role_membership_pkey;
alter table public.role_membership add constraint rolesync_role_membership_key unique (member_id, group_id);
alter table public.role_membership alter column group_id drop not null;
insert into public.role_membership (group_id, member_id) values (null, 901), (902, 901);
select jsonb_object_agg(c.check_name, to_jsonb(c) - 'check_name') as got from public.role_membership_check() c \gset
rollback to savepoint damage;
select is(:'got'::jsonb -> 'null_rows' ->> 'count', '1',
  'a NULL row under a key, with a nullable column: null_rows counts it (it counted only without a key)');
select ok((:'got'::jsonb -> 'primary_key' ->> 'ok')::boolean and :'got'::jsonb -> 'null_rows' ->> 'hint' like 'Run `rolesync dedupe`%',
  'the table is keyed, and the hint says to dedupe');

-- And undamaged, every check is ok.
select is_empty($$select check_name from public.role_membership_check() where not ok$$, 'undamaged: all good');
select results_eq($$select detail from public.role_membership_check() where check_name in ('migrations', 'functions', 'app_role_privileges', 'group_index', 'guard_trigger') order by check_name$$,
  $$values ('the application role rolesync_app has what the functions need'),
           ('5 functions as their migrations made them'),
           ('role_membership_group_id_member_id_idx (group_id, member_id) is in place'),
           ('role_membership_guard is in place: every insert takes its member''s lock'),
           ('18 migrations applied, up to 000018.sql')$$,
  'each says what it found');
select ok((select bool_and(hint is null) from public.role_membership_check()), 'and has no advice to give');

-- The fingerprints follow the migrations: record_fingerprints() takes them again.
alter function public.sync_role_memberships_by_foreign_id(text, text[], text) security definer;
select rolesync.record_fingerprints();
select ok((select ok from public.role_membership_check() where check_name = 'functions'),
  'record_fingerprints() takes the definitions as they are now (what a migration restating one runs)');

select * from finish();
rollback;
