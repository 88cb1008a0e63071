-- The guard trigger: every writer on the member lock, repeats skipped, before and after the key exists.
begin;
set local search_path = public, tap;
select plan(16);

insert into public.role (id, foreign_id, name, type, is_admin, is_muted, is_blocked, is_tester)
select v.id, 'test:' || v.id, 'role ' || v.id, v.type::public.role_type, false, false, false, false
  from (values (1, 'user'), (2, 'user'), (3, 'user'), (11, 'group'), (12, 'group'), (13, 'group')) v(id, type);

create function pg_temp.holds_member_lock(p_member integer) returns boolean language sql as $$
  select exists (select from pg_catalog.pg_locks
                  where locktype = 'advisory' and classid = 1919904869 and objid = p_member and objsubid = 2
                    and pid = pg_catalog.pg_backend_pid() and granted)
$$;

-- With the key (the end state): repeats are skipped instead of raising 23505.
insert into public.role_membership (group_id, member_id) values (11, 1);
select ok(pg_temp.holds_member_lock(1), 'an insert takes the member lock');
select lives_ok($$insert into public.role_membership (group_id, member_id) values (11, 1)$$,
  'with the key, repeating a stored pair does not raise 23505 ...');
select is((select count(*) from public.role_membership where group_id = 11 and member_id = 1), 1::bigint,
  '... it is skipped');

-- A delete does not take the member lock: legacy logins delete before they
-- insert, and must never hold the member lock while waiting for a row.
savepoint before_delete;
alter table public.role_membership disable trigger role_membership_guard;
insert into public.role_membership (group_id, member_id) values (11, 3);
alter table public.role_membership enable trigger role_membership_guard;
select ok(not pg_temp.holds_member_lock(3), 'no lock on member 3 yet');
delete from public.role_membership where member_id = 3;
select ok(not pg_temp.holds_member_lock(3), 'a delete takes no member lock');

-- Back to the migration's state between 000003 and 000007: no key, a NOT VALID check.
alter table public.role_membership drop constraint role_membership_pkey;
alter table public.role_membership alter column group_id drop not null, alter column member_id drop not null;
alter table public.role_membership add constraint role_membership_not_null
  check (group_id is not null and member_id is not null) not valid;

select results_eq(
  $$with i as (insert into public.role_membership (group_id, member_id) values (11, 1) returning 1) select count(*) from i$$,
  $$values (0::bigint)$$, 'without the key, an insert repeating a stored pair is skipped');
select results_eq(
  $$with i as (insert into public.role_membership (group_id, member_id) values (12, 1) returning 1) select count(*) from i$$,
  $$values (1::bigint)$$, 'a new pair is stored');
select results_eq(
  $$with i as (insert into public.role_membership (group_id, member_id) values (13, 2), (13, 2) returning 1) select count(*) from i$$,
  $$values (1::bigint)$$, 'the same pair twice in one statement is stored once');
select bag_eq('select group_id, member_id from public.role_membership',
  $$values (11, 1), (12, 1), (13, 2)$$, 'no pair is stored twice');

select results_eq(
  $$with u as (update public.role_membership set group_id = 11 where group_id = 12 and member_id = 1 returning 1) select count(*) from u$$,
  $$values (0::bigint)$$, 'an update that would repeat a pair is skipped');
select results_eq(
  $$with u as (update public.role_membership set group_id = 13 where group_id = 12 and member_id = 1 returning 1) select count(*) from u$$,
  $$values (1::bigint)$$, 'an update to a new pair goes through');
select results_eq(
  $$with u as (update public.role_membership set member_id = member_id where group_id = 13 returning 1) select count(*) from u$$,
  $$values (2::bigint)$$, 'an update that keeps the pair goes through');

select throws_ok($$insert into public.role_membership (group_id, member_id) values (null, 1)$$, '23514', null,
  'a NULL row is refused by the NOT VALID check, even before validation');

select results_eq(
  $$select added, removed from public.sync_role_memberships(2, array[11, 13])$$,
  $$values (array[11], array[]::integer[])$$,
  'sync_role_memberships works under the guard, before the key exists');

-- The dedupe removes copies without taking member locks (a login must not wait for its whole scan).
rollback to savepoint before_delete;
alter table public.role_membership drop constraint role_membership_pkey;
alter table public.role_membership disable trigger role_membership_guard;
insert into public.role_membership (group_id, member_id) values (12, 2), (12, 2);
alter table public.role_membership enable trigger role_membership_guard;
select is(public.dedupe_role_memberships(), 1::bigint, 'the dedupe removes the copy through the guard');
select ok(not pg_temp.holds_member_lock(2), 'without taking the member''s lock');

select * from finish();
rollback;
