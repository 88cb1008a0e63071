-- sync_role_memberships_by_foreign_id: Aleph's OAuth group sync in one call.
begin;
set local search_path = public, tap;
select plan(44);

insert into public.role (id, foreign_id, name, type, deleted_at, is_admin, is_muted, is_blocked, is_tester)
select v.id, v.fid, v.name, v.type::public.role_type, v.deleted_at, false, false, false, false
  from (values
    (1, 'oidc:alice', 'Alice', 'user', null::timestamp),
    (2, 'oidc:bob', 'Bob', 'user', null),
    (3, 'oidc:gone', 'Gone', 'user', '2024-01-01'),
    (11, 'group:research', 'research', 'group', null),
    (12, 'group:retired', 'retired', 'group', '2024-01-01'),
    (13, 'manual:auditors', 'auditors', 'group', null),
    (14, 'group:oidc:alice', 'odd', 'user', null)   -- a user whose foreign id looks like a group's
  ) v(id, fid, name, type, deleted_at);
-- New groups get ids after the ones above.
do $$ begin perform setval('public.role_id_seq', 1000); end $$;
-- An admin granted Alice a group by hand; the identity provider knows nothing of it.
insert into public.role_membership (group_id, member_id) values (13, 1);

create function pg_temp.message_of(p_sql text) returns text language plpgsql as $$
begin
  execute p_sql;
  return null;
exception when others then
  return sqlerrm;
end $$;

create temp view alice as
  select r.foreign_id from public.role_membership m join public.role r on r.id = m.group_id where m.member_id = 1;

-- Which NOT NULL columns of role have no server default: Aleph's list, read from the catalog.
select set_eq(
  $$select a.attname::text from pg_catalog.pg_attribute a
     where a.attrelid = 'public.role'::regclass and a.attnum > 0 and not a.attisdropped
       and a.attnotnull and not a.atthasdef$$,
  array['foreign_id', 'name', 'type', 'is_admin', 'is_muted', 'is_blocked', 'is_tester'],
  'role''s NOT NULL columns without defaults are exactly Aleph''s: the ones new groups get values for');

-- A first login: one group exists, two are new.
create temp table first_login as
  select * from public.sync_role_memberships_by_foreign_id('oidc:alice', array['group:research', 'group:ops', 'group:data', 'group:ops']);
select is((select cardinality(created) from first_login), 2, 'the two missing groups are created, repeats counted once');
select set_eq($$select foreign_id::text from public.role where id = any ((select created from first_login)::integer[])$$,
  array['group:data', 'group:ops'], 'with the foreign ids from the token');
select results_eq(
  $$select name::text, type::text, is_admin, is_muted, is_blocked, is_tester, deleted_at is null,
           created_at is not null and updated_at is not null
      from public.role where foreign_id = 'group:ops'$$,
  $$values ('ops', 'group', false, false, false, false, true, true)$$,
  'a new group is named after the prefix, typed group, with Aleph''s defaults for the NOT NULL columns');
select is(
  (select added from first_login),
  (select array_agg(id order by id) from public.role where foreign_id in ('group:research', 'group:ops', 'group:data')),
  'the member is added to all three groups');
select is((select removed from first_login), '{}'::integer[], 'nothing removed');
select is((select skipped from first_login), '{}'::integer[], 'nothing skipped');
select set_eq('select foreign_id::text from alice',
  array['group:research', 'group:ops', 'group:data', 'manual:auditors'], 'the hand-granted membership stays');

-- The next login with the same groups writes nothing.
create temp table writes_before as
  select relname, n_tup_ins, n_tup_upd, n_tup_del from pg_catalog.pg_stat_xact_user_tables
   where (schemaname, relname) in (('public', 'role'), ('public', 'role_membership'), ('rolesync', 'role_membership_version'));
create temp table seq_before as select last_value from public.role_id_seq;
select results_eq(
  $$select added, removed, created, skipped
      from public.sync_role_memberships_by_foreign_id('oidc:alice', array['group:data', 'group:research', 'group:ops'])$$,
  $$values ('{}'::integer[], '{}'::integer[], '{}'::integer[], '{}'::integer[])$$,
  'the same groups again: nothing to do');
select results_eq(
  $$select relname, n_tup_ins, n_tup_upd, n_tup_del from pg_catalog.pg_stat_xact_user_tables
     where (schemaname, relname) in (('public', 'role'), ('public', 'role_membership'), ('rolesync', 'role_membership_version')) order by relname$$,
  $$select * from writes_before order by relname$$,
  'no row inserted, updated or deleted in role, role_membership or role_membership_version');
select is((select last_value from public.role_id_seq), (select last_value from seq_before),
  'not even a sequence value is drawn');

-- A later login drops a group: only the managed membership goes.
select results_eq(
  $$select removed, created from public.sync_role_memberships_by_foreign_id('oidc:alice', array['group:research'])$$,
  $$select array_agg(id order by id), '{}'::integer[] from public.role where foreign_id in ('group:ops', 'group:data')$$,
  'groups no longer in the token are left');
select set_eq('select foreign_id::text from alice', array['group:research', 'manual:auditors'],
  'and the hand-granted membership is still there');
select results_eq(
  $$select removed from public.sync_role_memberships_by_foreign_id('oidc:alice', '{}')$$,
  $$values (array[11])$$, 'an empty token removes every managed membership...');
select set_eq('select foreign_id::text from alice', array['manual:auditors'], '... and only those');

-- A soft-deleted group in the token is not resurrected, and not joined.
select results_eq(
  $$select added, skipped, created from public.sync_role_memberships_by_foreign_id('oidc:alice', array['group:retired', 'group:research'])$$,
  $$values (array[11], array[12], '{}'::integer[])$$,
  'a soft-deleted group is skipped and reported; the rest of the login goes on');
select ok((select deleted_at is not null from public.role where id = 12), 'it stays soft-deleted');
select is((select count(*) from public.role where foreign_id = 'group:retired'), 1::bigint, 'and is not created again');

-- Another prefix, and the empty prefix that manages every group.
select results_eq(
  $$select added, removed from public.sync_role_memberships_by_foreign_id('oidc:alice', array['manual:auditors'], 'manual:')$$,
  $$values ('{}'::integer[], '{}'::integer[])$$,
  'with prefix manual: only the manual: groups are in scope');
select set_eq('select foreign_id::text from alice', array['manual:auditors', 'group:research'],
  'and the group: memberships are left alone then');
select results_eq(
  $$select removed from public.sync_role_memberships_by_foreign_id('oidc:alice', array['manual:auditors'], '')$$,
  $$values (array[11])$$, 'the empty prefix manages every group');

-- Bad input: an error with its SQLSTATE, and nothing changes (no group created, no membership touched).
create temp table roles_before as select id, foreign_id from public.role;
create temp table members_before as select group_id, member_id from public.role_membership;
select throws_ok($$select public.sync_role_memberships_by_foreign_id(null, array['group:x'])$$, '22004',
  'sync_role_memberships_by_foreign_id: member_foreign_id must not be null', 'a NULL member is refused (22004)');
select throws_ok($$select public.sync_role_memberships_by_foreign_id('', array['group:x'])$$, '22023',
  'sync_role_memberships_by_foreign_id: member_foreign_id must not be empty', 'an empty member name is refused (22023)');
select throws_ok($$select public.sync_role_memberships_by_foreign_id('oidc:alice', null)$$, '22004',
  'sync_role_memberships_by_foreign_id: group_foreign_ids must not be null', 'a NULL list is refused (22004)');
select throws_ok($$select public.sync_role_memberships_by_foreign_id('oidc:alice', array['group:new', null])$$, '22004',
  'sync_role_memberships_by_foreign_id: group_foreign_ids must not contain NULL (element 2 is NULL)',
  'a NULL group name is refused (22004), its position named');
select throws_ok($$select public.sync_role_memberships_by_foreign_id('oidc:alice', array['group:new'], null)$$, '22004',
  'sync_role_memberships_by_foreign_id: managed_prefix must not be null', 'a NULL prefix is refused (22004)');
select throws_ok($$select public.sync_role_memberships_by_foreign_id('oidc:alice', array['group:new', ''])$$, '22023',
  'empty group names: ''''', 'an empty group name is refused (22023)');
select throws_ok($$select public.sync_role_memberships_by_foreign_id('oidc:alice', array['group:'])$$, '22023',
  'empty group names: ''group:''', 'a name that is only the prefix is refused (22023)');
select throws_ok($$select public.sync_role_memberships_by_foreign_id('oidc:alice', '{{group:a},{group:b}}'::text[])$$, '22023',
  null, 'a multi-dimensional list is refused (22023)');
select throws_ok($$select public.sync_role_memberships_by_foreign_id('oidc:alice', array['group:new', 'admins'])$$, 'RS005',
  'groups outside the managed prefix ''group:'': ''admins''', 'a name outside the prefix is refused (RS005)');
select throws_ok(
  format($$select public.sync_role_memberships_by_foreign_id('oidc:alice', array['group:new', %L])$$, 'group:' || repeat('x', 2043)),
  '22001', null, 'an over-long foreign id is refused (22001)');
select ok(pg_temp.message_of(format($$select public.sync_role_memberships_by_foreign_id('oidc:alice', array[%L])$$, 'group:' || repeat('x', 2043)))
          like 'group foreign ids longer than 2048 characters: group:xxx%… (2049 characters)',
  'the message gives the limit, the start of the name and its length');
select lives_ok(
  format($$select public.sync_role_memberships_by_foreign_id('oidc:bob', array[%L])$$, 'group:' || repeat('y', 2042)),
  'a foreign id of exactly 2048 characters is fine');
delete from public.role_membership where member_id = 2;
delete from public.role where foreign_id like 'group:yyy%';
select throws_ok($$select public.sync_role_memberships_by_foreign_id('oidc:alice', array['group:new', 'group:oidc:alice'])$$, 'RS003',
  'names belong to roles that are not groups: ''group:oidc:alice'' (user)', 'a name that belongs to a user is refused (RS003)');
select throws_ok($$select public.sync_role_memberships_by_foreign_id('oidc:nobody', array['group:new'])$$, 'RS001',
  'member role ''oidc:nobody'' does not exist', 'an unknown member is refused (RS001)');
select throws_ok($$select public.sync_role_memberships_by_foreign_id('oidc:gone', array['group:new'])$$, 'RS001',
  'member role ''oidc:gone'' is soft-deleted', 'a soft-deleted member is refused (RS001)');
select throws_ok($$select public.sync_role_memberships_by_foreign_id('group:research', array['group:research'])$$, 'RS004',
  'role ''group:research'' cannot be a member of itself', 'a group in its own list is refused (RS004)');
select set_eq('select id, foreign_id from public.role', 'select * from roles_before',
  'after every refused call no group was created, not even the valid ones named beside the bad ones');
select set_eq('select group_id, member_id from public.role_membership', 'select * from members_before',
  'and no membership changed');

-- The core function's managed_prefix, directly.
select throws_ok($$select public.sync_role_memberships(1, array[13], 'group:')$$, 'RS005',
  'groups outside the managed prefix ''group:'': 13 (manual:auditors)', 'the core refuses an unmanaged id when given a prefix (RS005)');
select results_eq(
  $$select added, removed from public.sync_role_memberships(1, array[11], 'group:')$$,
  $$values (array[11], '{}'::integer[])$$, 'and with the prefix, keeps the unmanaged membership while adding');
select set_eq('select foreign_id::text from alice', array['manual:auditors', 'group:research'],
  'the hand-granted group survives a prefixed core sync');
select results_eq(
  $$select removed from public.sync_role_memberships(1, '{}')$$,
  $$values (array[11, 13])$$, 'without a prefix the core manages every group, as before');

-- Concurrent creators: the insert is in name order (no deadlock between two first logins).
select ok(
  (select prosrc ~ 'order by n\s+on conflict \(foreign_id\) do nothing'
     from pg_catalog.pg_proc where oid = 'public.sync_role_memberships_by_foreign_id(text, text[], text)'::regprocedure),
  'new groups are inserted in name order, with ON CONFLICT (foreign_id) DO NOTHING');

select * from finish();
rollback;
