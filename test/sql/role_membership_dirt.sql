-- rolesync.role_membership_dirt (000015): how dirty role_membership is, for `check` and `dedupe --dry-run`.
begin;
set local search_path = public, tap;
select plan(10);

select has_function('rolesync', 'role_membership_dirt', array['integer'], 'rolesync.role_membership_dirt(integer) exists');
select volatility_is('rolesync', 'role_membership_dirt', array['integer'], 'stable', 'it only reads: stable');
select ok(not has_function_privilege('public', 'rolesync.role_membership_dirt(integer)', 'execute'),
  'PUBLIC cannot run it: it is for the operator');

-- A clean table: nothing to report.
select results_eq(
  'select duplicated_pairs, surplus_copies, null_rows, worst from rolesync.role_membership_dirt()',
  $$values (0::bigint, 0::bigint, 0::bigint, '[]'::jsonb)$$,
  'a clean (keyed) table has no duplicates, no NULL rows, no worst pairs');

-- A table as it was before the key: without it, and without the guard that refuses duplicates.
insert into public.role (id, foreign_id, name, type, is_admin, is_muted, is_blocked, is_tester)
select g, 'dirt:' || g, 'r' || g, case when g < 10 then 'user' else 'group' end::role_type, false, false, false, false
  from generate_series(1, 13) g;
alter table public.role_membership disable trigger role_membership_guard;
alter table public.role_membership drop constraint role_membership_pkey;
alter table public.role_membership alter column group_id drop not null, alter column member_id drop not null;
insert into public.role_membership (group_id, member_id) values
  (10, 1), (10, 1), (10, 1),          -- three copies: two surplus
  (11, 2), (11, 2),                   -- two copies: one surplus
  (12, 3),                            -- once: clean
  (null, 4), (13, null), (null, null);

select results_eq(
  'select duplicated_pairs, surplus_copies, null_rows from rolesync.role_membership_dirt()',
  $$values (2::bigint, 3::bigint, 3::bigint)$$,
  'two duplicated pairs, three surplus copies, three rows with a NULL');
select is((select worst from rolesync.role_membership_dirt()),
  '[{"groupId": 10, "memberId": 1, "copies": 3}, {"groupId": 11, "memberId": 2, "copies": 2}]'::jsonb,
  'the worst pairs, most copies first');
select is((select worst from rolesync.role_membership_dirt(1)),
  '[{"groupId": 10, "memberId": 1, "copies": 3}]'::jsonb, 'p_top bounds the list');
select is((select worst from rolesync.role_membership_dirt(0)), '[]'::jsonb, 'p_top 0: counts only');
select is((select surplus_copies + null_rows from rolesync.role_membership_dirt()),
  (select count(*) from public.role_membership) - (select count(distinct (group_id, member_id)) from public.role_membership
                                                     where group_id is not null and member_id is not null),
  'surplus plus NULL rows is what a dedupe removes: every row beyond one per stored pair');
select is((select count(*)::int from public.role_membership), 9, 'it changed nothing');

select * from finish();
rollback;
