-- sync_role_memberships: exact results, MERGE semantics, no-op writes nothing, bad input changes nothing.
begin;
set local search_path = public, tap;
select plan(56);

-- Members 1..3 (3 is soft-deleted), groups 11..16 (16 soft-deleted), a system role 21.
insert into public.role (id, foreign_id, name, type, deleted_at, is_admin, is_muted, is_blocked, is_tester)
select v.id, 'test:' || v.id, 'role ' || v.id, v.type::public.role_type, v.deleted_at, false, false, false, false
  from (values (1, 'user', null::timestamp), (2, 'user', null), (3, 'user', '2024-01-01'),
               (11, 'group', null), (12, 'group', null), (13, 'group', null), (14, 'group', null),
               (15, 'group', null), (16, 'group', '2024-01-01'), (21, 'system', null)) v(id, type, deleted_at);

create temp view member_1 as
  select group_id from public.role_membership where member_id = 1;

-- Adding
select results_eq(
  $$select added, removed from public.sync_role_memberships(1, array[12, 11])$$,
  $$values (array[11, 12], array[]::integer[])$$,
  'adds missing memberships and reports them sorted');
select set_eq('select group_id from member_1', array[11, 12], 'the member is in exactly the groups given');

-- Removing
select results_eq(
  $$select added, removed from public.sync_role_memberships(1, array[11])$$,
  $$values (array[]::integer[], array[12])$$,
  'removes memberships not in the list');
select set_eq('select group_id from member_1', array[11], 'only the listed group remains');

-- Both at once
select results_eq(
  $$select added, removed from public.sync_role_memberships(1, array[15, 13, 14])$$,
  $$values (array[13, 14, 15], array[11])$$,
  'adds and removes in one call, each array sorted');
select set_eq('select group_id from member_1', array[13, 14, 15], 'the result is exactly the new list');

-- Repeats in the input
select results_eq(
  $$select added, removed from public.sync_role_memberships(1, array[12, 12, 13, 13, 13])$$,
  $$values (array[12], array[14, 15])$$,
  'repeated ids count once');
select bag_eq('select group_id from member_1', array[12, 13], 'no row is stored twice');
select is_empty('select * from public.role_membership_duplicates', 'the duplicates view stays empty');

-- Rows that stay are not touched
create temp table kept as
  select ctid::text as row_ctid, xmin::text as row_xmin from public.role_membership where member_id = 1 and group_id = 13;
do $$ begin perform public.sync_role_memberships(1, array[13, 14]); end $$;
select results_eq(
  $$select ctid::text, xmin::text from public.role_membership where member_id = 1 and group_id = 13$$,
  $$select row_ctid, row_xmin from kept$$,
  'a membership that stays keeps its row version (same ctid, same xmin)');

-- The no-op writes nothing
create temp table writes_before as
  select relname, n_tup_ins, n_tup_upd, n_tup_del, n_tup_hot_upd
    from pg_catalog.pg_stat_xact_user_tables
   where (schemaname, relname) in (('public', 'role_membership'), ('rolesync', 'role_membership_version'));
create temp table version_before as select * from rolesync.role_membership_version;
select results_eq(
  $$select added, removed from public.sync_role_memberships(1, array[14, 13])$$,
  $$values (array[]::integer[], array[]::integer[])$$,
  'a call that changes nothing returns two empty arrays');
select results_eq(
  $$select relname, n_tup_ins, n_tup_upd, n_tup_del, n_tup_hot_upd
      from pg_catalog.pg_stat_xact_user_tables
     where (schemaname, relname) in (('public', 'role_membership'), ('rolesync', 'role_membership_version'))
     order by relname$$,
  $$select * from writes_before order by relname$$,
  'the no-op inserts, updates and deletes no row (pg_stat_xact_user_tables)');
select set_eq('select * from rolesync.role_membership_version', 'select * from version_before',
  'the no-op leaves the member''s version alone');

-- Each change bumps the member's version
select is((select version from rolesync.role_membership_version where member_id = 1), 5::bigint,
  'each changing call bumped the member''s version once');

-- Empty list removes everything
select results_eq(
  $$select added, removed from public.sync_role_memberships(1, array[]::integer[])$$,
  $$values (array[]::integer[], array[13, 14])$$,
  'an empty list removes every membership');
select is_empty('select group_id from member_1', 'the member has no groups left');
select results_eq(
  $$select added, removed from public.sync_role_memberships(1, '{}')$$,
  $$values (array[]::integer[], array[]::integer[])$$,
  'an empty list for a member with no groups is a no-op');

-- Other members are not touched
do $$ begin
  perform public.sync_role_memberships(2, array[11, 12]);
  perform public.sync_role_memberships(1, array[11, 15]);
end $$;
select set_eq('select group_id from public.role_membership where member_id = 2', array[11, 12],
  'syncing one member leaves the others alone');

-- A member that already has memberships of a now soft-deleted group loses them
insert into public.role_membership (group_id, member_id) values (16, 1);
select results_eq(
  $$select added, removed from public.sync_role_memberships(1, array[11, 15])$$,
  $$values (array[]::integer[], array[16])$$,
  'a membership of a group deleted since is removed when not listed');

-- In a read-only transaction the no-op still works: it really writes nothing.
savepoint read_only;
set local transaction_read_only = on;
select lives_ok($$select public.sync_role_memberships(1, array[15, 11])$$,
  'a no-op call succeeds in a read-only transaction');
select throws_ok($$select public.sync_role_memberships(1, array[12])$$, '25006', null,
  'a changing call is refused there, as it should be');
rollback to savepoint read_only;

-- Bad input: an error with its SQLSTATE, naming the ids, and nothing changes.
create temp table state_before as select group_id, member_id from public.role_membership;
select throws_ok($$select public.sync_role_memberships(null, array[11])$$, '22004',
  'sync_role_memberships: role_id must not be null', 'a NULL role_id is refused (22004)');
select throws_ok($$select public.sync_role_memberships(1, null)$$, '22004',
  'sync_role_memberships: group_ids must not be null', 'a NULL array is refused (22004)');
select throws_ok($$select public.sync_role_memberships(1, array[12, null, 13])$$, '22004',
  'sync_role_memberships: group_ids must not contain NULL (element 2 is NULL)',
  'a NULL element is refused (22004) and its position named');
select throws_ok($$select public.sync_role_memberships(1, '{{11,12},{13,14}}'::integer[])$$, '22023',
  'sync_role_memberships: group_ids must be a one-dimensional array',
  'a multi-dimensional array is refused (22023)');
select throws_ok($$select public.sync_role_memberships(99, array[11])$$, 'RS001',
  'member role 99 does not exist', 'an unknown member is refused (RS001)');
select throws_ok($$select public.sync_role_memberships(3, array[11])$$, 'RS001',
  'member role 3 is soft-deleted', 'a soft-deleted member is refused (RS001)');
select throws_ok($$select public.sync_role_memberships(3, array[]::integer[])$$, 'RS001',
  'member role 3 is soft-deleted', 'a soft-deleted member is refused even with an empty list');
select throws_ok($$select public.sync_role_memberships(1, array[12, 98, 97])$$, 'RS002',
  'unknown or soft-deleted groups: 97, 98', 'unknown groups are refused (RS002), named in order');
select throws_ok($$select public.sync_role_memberships(1, array[12, 16])$$, 'RS002',
  'unknown or soft-deleted groups: 16', 'a soft-deleted group is refused (RS002)');
select throws_ok($$select public.sync_role_memberships(1, array[12, 2])$$, 'RS003',
  'roles are not groups: 2 (user)', 'a user id in the group list is refused (RS003)');
select throws_ok($$select public.sync_role_memberships(1, array[21, 2, 12])$$, 'RS003',
  'roles are not groups: 2 (user), 21 (system)', 'every non-group is named with its type (RS003)');
select throws_ok($$select public.sync_role_memberships(1, array[12, 1])$$, 'RS004',
  'role 1 cannot be a member of itself', 'the member in its own list is refused (RS004)');
select throws_ok($$select public.sync_role_memberships(2, array[2])$$, 'RS004',
  'role 2 cannot be a member of itself', 'even as the only element (RS004)');
select set_eq('select group_id, member_id from public.role_membership', 'select * from state_before',
  'after every refused call, role_membership is exactly as before');

-- Precedence: the cheapest checks first, before any lock or read.
select throws_ok($$select public.sync_role_memberships(99, array[99])$$, 'RS004', null,
  'self-membership is reported before an unknown member');
select throws_ok($$select public.sync_role_memberships(99, array[98])$$, 'RS001', null,
  'an unknown member is reported before unknown groups');
select throws_ok($$select public.sync_role_memberships(1, array[98, 2])$$, 'RS002', null,
  'unknown groups are reported before non-groups');

-- Hints tell the caller what to do next.
create or replace function pg_temp.hint_of(p_sql text) returns text language plpgsql as $$
declare v_hint text;
begin
  begin
    execute p_sql;
  exception when others then
    get stacked diagnostics v_hint = pg_exception_hint;
    return v_hint;
  end;
  return null;
end $$;
select is(pg_temp.hint_of('select public.sync_role_memberships(1, null)'),
  'Pass an empty array to remove every membership.', 'the NULL-array error says how to remove everything');
select is(pg_temp.hint_of('select public.sync_role_memberships(1, array[98])'),
  'Create the group roles first, or leave these ids out.', 'the unknown-group error says what to do');
select is(pg_temp.hint_of('select public.sync_role_memberships(1, array[1])'),
  'Remove the member''s own id from group_ids.', 'the self-membership error says what to do');

-- A list that is already the member's groups is still checked in full (000014 finds the no-op in one test).
insert into public.role (id, foreign_id, name, type, is_admin, is_muted, is_blocked, is_tester)
values (31, 'manual:31', 'hand-granted', 'group', false, false, false, false),
       (32, 'test:32', 'group 32', 'group', false, false, false, false),
       (33, 'test:33', 'group 33', 'group', false, false, false, false);
delete from public.role_membership where member_id = 2;
insert into public.role_membership (group_id, member_id) values (31, 2), (32, 2), (33, 2);
create temp view member_2 as
  select group_id from public.role_membership where member_id = 2;
select results_eq(
  $$select added, removed from public.sync_role_memberships(2, array[33, 32], 'test:')$$,
  $$values (array[]::integer[], array[]::integer[])$$,
  'with a prefix, a call naming exactly the managed groups is a no-op, beside a hand-granted group');
select set_eq('select group_id from member_2', array[31, 32, 33], 'the hand-granted group is still there');
select results_eq(
  $$select added, removed from public.sync_role_memberships(2, array[32], 'test:')$$,
  $$values (array[]::integer[], array[33])$$,
  'with a prefix, a managed group left out is removed');
select results_eq(
  $$select added, removed from public.sync_role_memberships(2, array[33, 32], 'test:')$$,
  $$values (array[33], array[]::integer[])$$,
  'and added again');
select set_eq('select group_id from member_2', array[31, 32, 33], 'the hand-granted group survives both');
select throws_ok($$select public.sync_role_memberships(2, array[31, 32, 33], 'test:')$$, 'RS005',
  'groups outside the managed prefix ''test:'': 31 (manual:31)',
  'an unmanaged group the member is in is refused when listed (RS005), though nothing would change');
update public.role set deleted_at = '2024-01-01' where id = 32;
select throws_ok($$select public.sync_role_memberships(2, array[32, 33], 'test:')$$, 'RS002',
  'unknown or soft-deleted groups: 32',
  'with a prefix, a group deleted since is refused (RS002) though the member is in it and nothing would change');
select throws_ok($$select public.sync_role_memberships(2, array[31, 32, 33])$$, 'RS002',
  'unknown or soft-deleted groups: 32', 'so it is without a prefix');
delete from public.role_membership where member_id = 2 and group_id = 32;
insert into public.role_membership (group_id, member_id) values (21, 2);
select throws_ok($$select public.sync_role_memberships(2, array[21, 31, 33])$$, 'RS003',
  'roles are not groups: 21 (system)', 'a non-group the member is in is refused (RS003) though nothing would change');
select set_eq('select group_id from member_2', array[21, 31, 33], 'after these refused calls the member''s rows are as before');
select throws_ok($$select public.sync_role_memberships(3, array[]::integer[], 'test:')$$, 'RS001',
  'member role 3 is soft-deleted', 'with a prefix, a soft-deleted member is refused too (RS001)');

-- The argument checks keep their order when several fail at once.
select throws_ok($$select public.sync_role_memberships(null, null)$$, '22004',
  'sync_role_memberships: role_id must not be null', 'a NULL role_id is named before a NULL array');
select throws_ok($$select public.sync_role_memberships(1, '{{1,null},{11,12}}'::integer[])$$, '22023',
  'sync_role_memberships: group_ids must be a one-dimensional array',
  'a multi-dimensional array is named before a NULL element and self-membership');
select throws_ok($$select public.sync_role_memberships(1, array[1, null])$$, '22004',
  'sync_role_memberships: group_ids must not contain NULL (element 2 is NULL)',
  'a NULL element is named before self-membership');

-- The member lock is the documented advisory lock, held to the end of the transaction.
select ok(
  exists (select from pg_catalog.pg_locks
           where locktype = 'advisory' and classid = 1919904869 and objid = 1 and objsubid = 2
             and pid = pg_catalog.pg_backend_pid() and granted),
  'the member lock (1919904869, member id) is held until commit');

select * from finish();
rollback;
