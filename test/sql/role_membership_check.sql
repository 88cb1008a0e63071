-- role_membership_check(): one row per check, ok only when nothing needs doing.
begin;
set local search_path = public, tap;
select plan(24);

select has_function('public', 'role_membership_check', array[]::text[], 'role_membership_check() exists');
select volatility_is('public', 'role_membership_check', array[]::text[], 'stable', 'the check only reads: stable');
select isnt_definer('public', 'role_membership_check', array[]::text[], 'the check runs as the caller');
select is(
  (select proconfig from pg_catalog.pg_proc where oid = 'public.role_membership_check()'::regprocedure),
  array['search_path=pg_catalog, pg_temp'], 'the check pins search_path');
select function_privs_are('public', 'role_membership_check', array[]::text[], 'rolesync_app', array[]::text[],
  'the check is for operators, not the application role');

insert into public.role (id, foreign_id, name, type, deleted_at, is_admin, is_muted, is_blocked, is_tester)
select v.id, 'test:' || v.id, 'role ' || v.id, v.type::public.role_type, v.deleted_at, false, false, false, false
  from (values (1, 'user', null::timestamp), (2, 'user', '2024-01-01'), (11, 'group', null), (12, 'group', '2024-01-01')) v(id, type, deleted_at);
insert into public.role_membership (group_id, member_id) values (11, 1);

select set_eq($$select check_name, ok from public.role_membership_check()$$,
  $$values ('primary_key', true), ('redundant_key', true), ('duplicates', true), ('null_rows', true), ('invalid_indexes', true),
           ('soft_deleted_members', true), ('soft_deleted_groups', true), ('migrations', true), ('guard_trigger', true),
           ('functions', true), ('app_role_privileges', true), ('group_index', true)$$,
  'on a migrated, clean table every check is ok');
select results_eq(
  $$select check_name, ok, count, detail from public.role_membership_check() where check_name in ('primary_key', 'redundant_key')$$,
  $$values ('primary_key', true, null::bigint, 'role_membership_pkey (member_id, group_id) is in place'),
           ('redundant_key', true, 1::bigint, 'one key on (member_id, group_id)')$$,
  'the primary key keys the table, and it is the only key');
select is_empty($$select * from public.role_membership_check() where hint is not null$$,
  'and no check has advice to give');

-- Memberships that point at soft-deleted roles.
insert into public.role_membership (group_id, member_id) values (12, 1), (11, 2);
select results_eq(
  $$select check_name, ok, count from public.role_membership_check()
     where check_name like 'soft_deleted%' order by check_name$$,
  $$values ('soft_deleted_groups', false, 1::bigint), ('soft_deleted_members', false, 1::bigint)$$,
  'memberships of a soft-deleted member and in a soft-deleted group are counted');
select ok((select hint like '%DELETE FROM role_membership%' from public.role_membership_check()
            where check_name = 'soft_deleted_members'), 'with the statement that removes them');

-- An invalid index (what an interrupted CREATE INDEX CONCURRENTLY leaves; faked in the catalog, rolled back).
update pg_catalog.pg_index set indisvalid = false
 where indexrelid = 'public.role_membership_group_id_member_id_idx'::regclass;
select results_eq(
  $$select ok, count, detail from public.role_membership_check() where check_name = 'invalid_indexes'$$,
  $$values (false, 1::bigint, 'INVALID: public.role_membership_group_id_member_id_idx')$$,
  'an invalid index is named');
update pg_catalog.pg_index set indisvalid = true
 where indexrelid = 'public.role_membership_group_id_member_id_idx'::regclass;

-- Both keys at once: what Aleph's 4.1 upgrade leaves on a table rolesync keyed under its own name.
alter table public.role_membership add constraint rolesync_role_membership_key unique (member_id, group_id);
select results_eq(
  $$select check_name, ok, count from public.role_membership_check() where check_name in ('primary_key', 'redundant_key')$$,
  $$values ('primary_key', true, null::bigint), ('redundant_key', false, 2::bigint)$$,
  'both role_membership_pkey and rolesync_role_membership_key: redundant_key fails, counting two keys');
select results_eq(
  $$select detail, hint from public.role_membership_check() where check_name = 'redundant_key'$$,
  $$values ('both a primary key and rolesync_role_membership_key: two unique indexes on (member_id, group_id)',
            'Run `rolesync migrate`: it keeps the key Aleph''s Alembic state calls for and drops the other.')$$,
  'and says that the next migrate drops one, as Aleph''s Alembic state calls for (test/aleph-lifecycle.test.ts)');
select is(rolesync.role_membership_key(), 'role_membership_pkey'::name, 'role_membership_key() prefers the primary key');

-- rolesync's unique constraint alone: the table is keyed, until Aleph adds its own.
alter table public.role_membership drop constraint role_membership_pkey;
select results_eq(
  $$select check_name, ok, count, detail from public.role_membership_check() where check_name in ('primary_key', 'redundant_key')$$,
  $$values ('primary_key', true, null::bigint,
            'keyed by rolesync_role_membership_key (UNIQUE (member_id, group_id)); no one else keys the table: this one stays'),
           ('redundant_key', true, 1::bigint, 'one key on (member_id, group_id)')$$,
  'rolesync''s unique constraint is a key too, and the check says that it stays (no Alembic ledger here; sync_aleph_login.sql tests the lines)');
select is(rolesync.role_membership_key(), 'rolesync_role_membership_key'::name,
  'role_membership_key() names rolesync''s constraint when there is no primary key');

-- A table without its key, with copies and NULL rows, as before the migration.
alter table public.role_membership drop constraint rolesync_role_membership_key;
select is(rolesync.role_membership_key(), null::name, 'role_membership_key() is NULL without a key');
alter table public.role_membership alter column group_id drop not null, alter column member_id drop not null;
alter table public.role_membership disable trigger role_membership_guard;
insert into public.role_membership (group_id, member_id) values (11, 1), (11, 1), (null, 1);
select results_eq(
  $$select check_name, ok, count from public.role_membership_check()
     where check_name in ('primary_key', 'duplicates', 'null_rows') order by check_name$$,
  $$values ('duplicates', false, 2::bigint), ('null_rows', false, 1::bigint), ('primary_key', false, null::bigint)$$,
  'without the key: the missing key, the surplus copies and the NULL rows are reported');
select results_eq(
  $$select ok, count from public.role_membership_check() where check_name = 'redundant_key'$$,
  $$values (true, 0::bigint)$$,
  'no key is not a redundant key');
select ok((select hint like '%rolesync.role_membership_removed%' from public.role_membership_check() where check_name = 'duplicates'),
  'the hint says the copies go to the archive in schema rolesync');
select ok((select hint like '%rolesync migrate%' from public.role_membership_check() where check_name = 'primary_key'),
  'and the hint says to migrate');
select ok((select bool_and(hint is not null) from public.role_membership_check() where not ok),
  'every failing check says what to do');
select is((select count(*) from public.role_membership_check()), 12::bigint, 'always twelve checks');
select is(
  (select array_agg(check_name) from public.role_membership_check()),
  array['primary_key', 'redundant_key', 'duplicates', 'null_rows', 'invalid_indexes', 'soft_deleted_members', 'soft_deleted_groups',
        'migrations', 'guard_trigger', 'functions', 'app_role_privileges', 'group_index'],
  'in a fixed order: the table''s data, then rolesync''s own state (own_state.sql tests those)');

select * from finish();
rollback;
