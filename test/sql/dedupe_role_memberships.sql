-- dedupe_role_memberships and the role_membership_duplicates view, on a table put back in its pre-key state.
begin;
set local search_path = public, tap;
select plan(15);

insert into public.role (id, foreign_id, name, type, is_admin, is_muted, is_blocked, is_tester)
select v.id, 'test:' || v.id, 'role ' || v.id, v.type::public.role_type, false, false, false, false
  from (values (1, 'user'), (2, 'user'), (11, 'group'), (12, 'group'), (13, 'group')) v(id, type);
insert into public.role_membership (group_id, member_id) values (11, 1), (12, 2);

select is(public.dedupe_role_memberships(), 0::bigint, 'with the key in place there is nothing to remove');
select is_empty('select * from rolesync.role_membership_removed', 'and nothing is archived');

-- Back to Aleph's pre-4.1 table: no key, nullable columns, and the rows the race left
-- (written with the guard off, as they were before the migration installed it).
alter table public.role_membership drop constraint role_membership_pkey;
alter table public.role_membership alter column group_id drop not null, alter column member_id drop not null;
alter table public.role_membership disable trigger role_membership_guard;
delete from public.role_membership;
insert into public.role_membership (group_id, member_id) values
  (11, 1), (11, 1), (11, 1),   -- a triplicate
  (12, 1), (12, 1),            -- a duplicate
  (13, 1), (11, 2),            -- clean rows
  (null, 1), (11, null), (null, null);
alter table public.role_membership enable trigger role_membership_guard;
create temp table before_dedupe as select group_id, member_id from public.role_membership;

select set_eq('select group_id, member_id, copies from public.role_membership_duplicates',
  $$values (11, 1, 3::bigint), (12, 1, 2::bigint)$$,
  'the view lists each duplicated pair with its number of copies');

select is(public.dedupe_role_memberships(), 6::bigint,
  'the dedupe reports every row it removed: 2 + 1 extra copies and 3 NULL rows');
select bag_eq('select group_id, member_id from public.role_membership',
  $$values (11, 1), (12, 1), (13, 1), (11, 2)$$,
  'exactly one row of each pair remains, and no NULL row');
select is_empty('select * from public.role_membership_duplicates', 'the view is empty afterwards');
select bag_eq(
  $$select group_id, member_id, reason from rolesync.role_membership_removed$$,
  $$values (11, 1, 'duplicate'), (11, 1, 'duplicate'), (12, 1, 'duplicate'),
           (null::integer, 1, 'null_column'), (11, null::integer, 'null_column'), (null::integer, null::integer, 'null_column')$$,
  'every removed row is archived with its reason');
select bag_eq(
  $$select group_id, member_id from public.role_membership
    union all select group_id, member_id from rolesync.role_membership_removed$$,
  'select group_id, member_id from before_dedupe',
  'nothing is lost: the table plus the archive is every row there was');
select ok((select bool_and(removed_at = now()) from rolesync.role_membership_removed),
  'archived rows carry the time of removal');
select ok((select bool_and(removed_by = current_user) from rolesync.role_membership_removed),
  'archived rows carry who removed them');

select is(public.dedupe_role_memberships(), 0::bigint, 'a second run removes nothing: it is idempotent');
select is((select count(*) from rolesync.role_membership_removed), 6::bigint, 'and archives nothing more');

-- The cleaned table takes the key; Aleph's per-row delete then matches exactly one row.
select lives_ok($$alter table public.role_membership add constraint role_membership_pkey primary key (member_id, group_id)$$,
  'after the dedupe the primary key can be added');
select results_eq(
  $$with d as (delete from public.role_membership where group_id = 11 and member_id = 1 returning 1) select count(*) from d$$,
  $$values (1::bigint)$$,
  'Aleph''s per-row DELETE now matches exactly one row');

-- On an empty table it is a quick no-op too.
delete from public.role_membership;
alter table public.role_membership drop constraint role_membership_pkey;
select is(public.dedupe_role_memberships(), 0::bigint, 'an empty table has nothing to remove');

select * from finish();
rollback;
