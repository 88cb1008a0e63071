-- sync_aleph_login (000017): Aleph's OAuth login of both lines in one call, lock first; and
-- rolesync.alembic_line(), which tells Aleph's chain, OpenAleph's and a standalone database apart.
begin;
set local search_path = public, tap;
select plan(64);

insert into public.role (id, foreign_id, name, email, type, deleted_at, is_blocked, is_admin, is_muted, is_tester,
                         created_at, updated_at, api_key)
select v.id, v.fid, v.name, v.email, v.type::public.role_type, v.deleted_at, v.blocked, v.admin, false, false,
       '2020-01-01', '2020-01-01', v.key
  from (values
    (1, 'oidc:alice', 'Alice', 'alice@example.org', 'user', null::timestamp, false, false, null::text),
    (2, 'oidc:mallory', 'Mallory', 'mallory@example.org', 'user', null, true, false, null),
    (3, 'oidc:gone', 'Gone', 'gone@example.org', 'user', '2024-01-01', false, false, null),
    (4, 'system:robot', 'Robot', null, 'system', null, false, false, null),
    (5, 'ldap:bob', 'Bob', 'Bob@Example.org', 'user', null, false, true, null),
    (6, 'oidc:carol', 'Carol', 'carol@example.org', 'user', null, false, true, 'carols-key'),
    (11, 'group:research', 'research', null, 'group', null, false, false, null),
    (12, 'group:retired', 'retired', null, 'group', '2024-01-01', false, false, null),
    (13, 'manual:auditors', 'auditors', null, 'group', null, false, false, null),
    (14, 'group:odd', 'odd', null, 'user', null, false, false, null)
  ) v(id, fid, name, email, type, deleted_at, blocked, admin, key);
do $$ begin perform setval('public.role_id_seq', 1000); end $$;
insert into public.role_membership (group_id, member_id) values (13, 1), (11, 6);

create function pg_temp.code_of(p_sql text) returns text language plpgsql as $$
begin
  execute p_sql;
  return null;
exception when others then
  return sqlstate;
end $$;
create function pg_temp.message_of(p_sql text) returns text language plpgsql as $$
begin
  execute p_sql;
  return null;
exception when others then
  return sqlerrm;
end $$;
create temp view groups_of as
  select u.foreign_id as member, g.foreign_id as grp
    from public.role_membership m join public.role u on u.id = m.member_id join public.role g on g.id = m.group_id;
create temp table snapshot as select * from public.role;

-- Structure.
select has_function('public', 'sync_aleph_login',
  array['text', 'text', 'text', 'text[]', 'boolean', 'boolean', 'boolean', 'text', 'boolean', 'text', 'text', 'text[]', 'text'],
  'sync_aleph_login(...) exists');
select volatility_is('public', 'sync_aleph_login',
  array['text', 'text', 'text', 'text[]', 'boolean', 'boolean', 'boolean', 'text', 'boolean', 'text', 'text', 'text[]', 'text'],
  'volatile', 'it writes: volatile');
select isnt_definer('public', 'sync_aleph_login',
  array['text', 'text', 'text', 'text[]', 'boolean', 'boolean', 'boolean', 'text', 'boolean', 'text', 'text', 'text[]', 'text'],
  'it runs as its caller');
select function_privs_are('public', 'sync_aleph_login',
  array['text', 'text', 'text', 'text[]', 'boolean', 'boolean', 'boolean', 'text', 'boolean', 'text', 'text', 'text[]', 'text'],
  'rolesync_app', array['EXECUTE'], 'the application role may log users in');
select column_privs_are('public', 'role', 'foreign_id', 'rolesync_app', array['SELECT', 'INSERT', 'UPDATE'],
  'it may re-key a user (OAUTH_MIGRATE_SUB)');
select column_privs_are('public', 'role', 'is_admin', 'rolesync_app', array['SELECT', 'INSERT', 'UPDATE'],
  'and set is_admin');
select is((select pg_catalog.array_to_string(proconfig, ',') from pg_catalog.pg_proc
            where oid = 'public.sync_aleph_login(text, text, text, text[], boolean, boolean, boolean, text, boolean, text, text, text[], text)'::regprocedure),
  'search_path=pg_catalog, pg_temp', 'it pins search_path');

-- A new user, Aleph's rules (the defaults): created as Aleph's load_or_create does, groups created and joined.
select results_eq(
  $$select member_created, is_admin, added, removed, created, skipped
      from sync_aleph_login('oidc:new', 'New Person', 'new@example.org', array['group:research', 'group:fresh'])$$,
  $$values (true, false, array['group:fresh', 'group:research'], '{}'::text[], array['group:fresh'], '{}'::text[])$$,
  'a first login creates the user and the missing group, and joins both');
select results_eq(
  $$select name::text, email::text, type::text, is_admin, is_muted, is_blocked, is_tester, api_key::text, deleted_at,
           created_at = updated_at and created_at > now() at time zone 'utc' - interval '1 minute'
      from public.role where foreign_id = 'oidc:new'$$,
  $$values ('New Person', 'new@example.org', 'user', false, false, false, false, null::text, null::timestamp, true)$$,
  'with the token''s name and email, the flags false, no api key, and its times now (UTC)');
select results_eq($$select name::text, type::text, is_admin from public.role where foreign_id = 'group:fresh'$$,
  $$values ('fresh', 'group', false)$$, 'the new group is named after its name, typed group');
select is((select updated_at from public.role where id = 11), '2020-01-01'::timestamp, 'an existing group row is not written');

-- Names: token name, else the email, else the foreign id (as Python's `name or email`).
do $$ begin perform sync_aleph_login('oidc:noname', null, 'nn@example.org', '{}'); end $$;
select is((select name::text from public.role where foreign_id = 'oidc:noname'), 'nn@example.org', 'no name: the email');
do $$ begin perform sync_aleph_login('oidc:nothing', '', null, '{}'); end $$;
select is((select name::text from public.role where foreign_id = 'oidc:nothing'), 'oidc:nothing', 'neither: the foreign id');

-- An existing user, Aleph: updated_at touched on every login, memberships exactly the token's (hand-granted too).
select results_eq($$select member_created, is_admin, added, removed from sync_aleph_login('oidc:alice', 'Alice A', 'a2@example.org', array['group:research'])$$,
  $$values (false, false, array['group:research'], array['manual:auditors'])$$,
  'the token is the whole truth: the membership granted by hand goes, as clear_roles() does');
select results_eq($$select name::text, email::text, updated_at > '2020-01-01' from public.role where id = 1$$,
  $$values ('Alice', 'alice@example.org', true)$$, 'Aleph keeps an existing user''s name and email, and touches updated_at');
create temp table before_login as select updated_at from public.role where id = 1;
do $$ begin perform sync_aleph_login('oidc:alice', 'Alice', null, array['group:research']); end $$;
select ok((select updated_at from public.role where id = 1) > (select updated_at from before_login),
  'even a login that changes nothing touches updated_at (Aleph: is_alertable reads it)');
select results_eq($$select is_admin from sync_aleph_login('oidc:alice', 'Alice', null, array['group:research'], admin_group => true)$$,
  $$values (true)$$, 'the admin group makes an Aleph user admin');
select results_eq($$select is_admin from sync_aleph_login('oidc:alice', 'Alice', null, array['group:research'])$$,
  $$values (true)$$, 'and Aleph never takes it back');
select results_eq($$select is_admin from sync_aleph_login('oidc:boss', 'Boss', 'boss@example.org', '{}', auto_admin => true)$$,
  $$values (true)$$, 'a new user in ALEPH_ADMINS is created admin');

-- OpenAleph's rules.
update public.role set updated_at = '2020-01-01' where id = 6;
select results_eq(
  $$select is_admin, added, removed from sync_aleph_login('oidc:carol', 'Carol', 'carol@example.org', array['group:research'],
      admin_rule => 'recompute', touch => 'on_change', update_name => true)$$,
  $$values (false, '{}'::text[], '{}'::text[])$$, 'OpenAleph recomputes is_admin: not in ALEPH_ADMINS, no admin group: false');
select results_eq($$select updated_at, api_key::text from public.role where id = 6$$,
  $$values ('2020-01-01'::timestamp, 'carols-key')$$, 'nothing else changed: updated_at untouched (OpenAleph touches on change), the key kept');
select results_eq(
  $$select removed from sync_aleph_login('oidc:carol', 'Carol C', 'carol@example.org', '{}',
      admin_rule => 'recompute', touch => 'on_change', update_name => true)$$,
  $$values (array['group:research'])$$, 'a changed token changes the groups');
select results_eq($$select name::text, updated_at > '2020-01-01' from public.role where id = 6$$,
  $$values ('Carol C', true)$$, 'and OpenAleph updates the name and touches updated_at');
select results_eq(
  $$select member_created, created from sync_aleph_login('oidc:dave', 'Dave', 'dave@example.org', array['group:keyed', 'group:research'],
      admin_rule => 'recompute', touch => 'on_change', update_name => true, api_keys => array['k-user', 'k-keyed', 'k-research'])$$,
  $$values (true, array['group:keyed'])$$, 'OpenAleph: new roles get the keys given');
select results_eq($$select foreign_id::text, api_key::text from public.role where foreign_id in ('oidc:dave', 'group:keyed', 'group:research') order by 1$$,
  $$values ('group:keyed', 'k-keyed'), ('group:research', null), ('oidc:dave', 'k-user')$$,
  'the user and the new group each get theirs; an existing group without one is not written');

-- The email rule.
do $$ begin perform sync_aleph_login('oidc:alice', 'Alice', 'alice@new.example', '{group:research}', email_rule => 'replace'); end $$;
select is((select email::text from public.role where id = 1), 'alice@new.example', 'email_rule replace stores a changed email');

-- OAUTH_MIGRATE_SUB: a user found by email is re-keyed.
select results_eq($$select member_id, member_created from sync_aleph_login('oidc:bob-sub', null, 'bob@example.org', '{}', migrate_sub => true)$$,
  $$values (5, false)$$, 'migrate_sub finds ldap:bob by its email, lower-cased');
select results_eq($$select foreign_id::text, name::text, is_admin from public.role where id = 5$$,
  $$values ('oidc:bob-sub', 'Bob@Example.org', true)$$,
  'and re-keys it; without a token name it is named after its stored email (Role.update); is_admin stays');
select results_eq($$select member_created from sync_aleph_login('oidc:eve', 'Eve', 'alice@new.example', '{}', migrate_sub => false)$$,
  $$values (true)$$, 'without migrate_sub the same email makes a new user');

-- Refusals change nothing.
select is(pg_temp.code_of($$select sync_aleph_login('oidc:mallory', 'M', null, array['group:new-for-mallory'])$$), 'RS006',
  'a blocked user: RS006');
select is(pg_temp.code_of($$select sync_aleph_login('oidc:gone', 'G', null, '{}')$$), 'RS001', 'a soft-deleted user: RS001');
select is(pg_temp.message_of($$select sync_aleph_login('oidc:gone', 'G', null, '{}', migrate_sub => true)$$),
  'member role ''oidc:gone'' is soft-deleted', 'refused before migrate_sub could re-key another user onto its foreign id');
select is(pg_temp.code_of($$select sync_aleph_login('system:robot', 'R', null, '{}')$$), 'RS003', 'a role that is not a user: RS003');
select is_empty($$select * from public.role where foreign_id = 'group:new-for-mallory'$$, 'the refused login created no group');
select is((select count(*) from public.role where updated_at > '2020-01-01' and id in (2, 3, 4)), 0::bigint, 'and wrote none of them');

-- Groups.
select results_eq($$select added, skipped from sync_aleph_login('oidc:frank', 'F', null, array['group:retired', 'group:research'])$$,
  $$values (array['group:research'], array['group:retired'])$$, 'a soft-deleted group is skipped, neither resurrected nor joined');
select is(pg_temp.code_of($$select sync_aleph_login('oidc:frank', 'F', null, array['group:odd'])$$), 'RS003',
  'a group name that belongs to a user: RS003');
insert into public.role_membership (group_id, member_id) select 13, id from public.role where foreign_id = 'oidc:frank';
select results_eq($$select removed from sync_aleph_login('oidc:frank', 'F', null, array['group:research'], managed_prefix => 'group:')$$,
  $$values ('{}'::text[])$$, 'managed_prefix => ''group:'' (the opt-in) keeps a membership granted by hand');
select results_eq($$select removed from sync_aleph_login('oidc:frank', 'F', null, array['group:research'])$$,
  $$values (array['manual:auditors'])$$, 'without it, it goes');

-- Argument checks.
select is(pg_temp.code_of($$select sync_aleph_login(null, 'x', null, '{}')$$), '22004', 'a NULL foreign id: 22004');
select is(pg_temp.code_of($$select sync_aleph_login('oidc:x', 'x', null, null)$$), '22004', 'a NULL list: 22004');
select is(pg_temp.code_of($$select sync_aleph_login('oidc:x', 'x', null, array[null]::text[])$$), '22004', 'a NULL group: 22004');
select is(pg_temp.code_of($$select sync_aleph_login('', 'x', null, '{}')$$), '22023', 'an empty foreign id: 22023');
select is(pg_temp.message_of($$select sync_aleph_login('oidc:x', 'x', null, '{}', touch => 'sometimes')$$),
  'sync_aleph_login: touch must be always or on_change, not ''sometimes''', 'a rule that is none of its values: 22023, naming it');
select is(pg_temp.code_of($$select sync_aleph_login('oidc:x', 'x', null, '{}', admin_rule => 'never')$$), '22023', 'admin_rule too');
select is(pg_temp.code_of($$select sync_aleph_login('oidc:x', 'x', null, '{}', email_rule => 'sometimes')$$), '22023', 'and email_rule');
select is(pg_temp.code_of($$select sync_aleph_login('oidc:x', 'x', null, array['group:'])$$), '22023', 'an empty group name: 22023');
select is(pg_temp.code_of($$select sync_aleph_login('oidc:x', 'x', null, array['oidc:x'])$$), 'RS004', 'the user in its own list: RS004');
select is(pg_temp.code_of($$select sync_aleph_login('oidc:x', 'x', null, array['team:a'], managed_prefix => 'group:')$$), 'RS005',
  'a group outside the opt-in prefix: RS005');
select is(pg_temp.code_of(format($$select sync_aleph_login(%L, 'x', null, '{}')$$, 'oidc:' || repeat('x', 2100))), '22001',
  'a foreign id longer than role.foreign_id: 22001');
select is_empty($$select * from public.role where foreign_id in ('oidc:x', '') or foreign_id like 'oidc:xxx%'$$,
  'no argument error created anything');

-- The foreign-id lock: taken, in its own key space, and held to commit.
do $$ begin perform sync_aleph_login('oidc:locked', 'L', null, '{}'); end $$;
select ok(exists (select from pg_catalog.pg_locks l
                   where l.locktype = 'advisory' and l.pid = pg_catalog.pg_backend_pid() and l.granted
                     and l.classid = 1919904870 and l.objsubid = 2
                     and l.objid::bigint = (pg_catalog.hashtext('oidc:locked')::bigint + 4294967296) % 4294967296),
  'the lock on (1919904870, hashtext(foreign id)) is held');
select ok(exists (select from pg_catalog.pg_locks l
                   where l.locktype = 'advisory' and l.pid = pg_catalog.pg_backend_pid()
                     and l.classid = 1919904869 and l.objid = (select id from public.role where foreign_id = 'oidc:locked')),
  'and the member lock after it');

-- rolesync.alembic_line() and aleph_adds_primary_key(): a standalone database here, then Aleph's and OpenAleph's revisions.
select is(rolesync.alembic_line(), 'none', 'no alembic_version: none');
create table public.alembic_version (version_num varchar(32) primary key);
select is(rolesync.alembic_line(), 'none', 'an empty ledger: none');
insert into public.alembic_version values ('8adf50aadcb0');
select is(rolesync.alembic_line(), 'aleph-4.1', 'a role table with api_key_digest reads as Aleph 4.1+, whatever the revision');
alter table public.role drop column api_key_digest;
select is(rolesync.alembic_line(), 'aleph-before-4.1', 'Aleph 4.0 (8adf50aadcb0)');
select is(rolesync.aleph_adds_primary_key(), true, 'whose 4.1 upgrade adds role_membership_pkey');
update public.alembic_version set version_num = 'c52a1f469ac7';
select is(rolesync.alembic_line(), 'aleph-before-4.1', 'the last revision both chains share reads as Aleph 3.x');
update public.alembic_version set version_num = '575ded9400fd';
select is(rolesync.alembic_line(), 'openaleph', 'OpenAleph 5.3''s head');
select is(rolesync.aleph_adds_primary_key(), false, 'whose chain never adds a key');
update public.alembic_version set version_num = 'e003034f4af8';
select is(rolesync.alembic_line(), 'openaleph', 'OpenAleph''s first revision of its own');
update public.alembic_version set version_num = 'ffffffffffff';
select is(rolesync.alembic_line(), 'unknown', 'a revision rolesync does not know: unknown');
select ok((select detail like '%: the Alembic revision is not one rolesync knows%' from public.role_membership_check() where check_name = 'primary_key')
          or (select rolesync.role_membership_key() <> 'rolesync_role_membership_key'),
  'check says so where rolesync''s key keys the table');

select * from finish();
rollback;
