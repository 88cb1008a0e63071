-- sync_oauth_login: Aleph's OAuth login (load or create the user, refuse, store the email, sync the groups) in one call.
begin;
set local search_path = public, tap;
select plan(81);

insert into public.role (id, foreign_id, name, email, type, deleted_at, is_blocked, is_admin, is_muted, is_tester)
select v.id, v.fid, v.name, v.email, v.type::public.role_type, v.deleted_at, v.blocked, false, false, false
  from (values
    (1, 'oidc:alice', 'Alice', 'alice@old.example', 'user', null::timestamp, false),
    (2, 'oidc:mallory', 'Mallory', 'mallory@old.example', 'user', null, true),
    (3, 'oidc:gone', 'Gone', 'gone@old.example', 'user', '2024-01-01', false),
    (4, 'oidc:gone-and-blocked', 'Both', null, 'user', '2024-01-01', true),
    (5, 'system:robot', 'Robot', null, 'system', null, false),
    (11, 'group:research', 'research', null, 'group', null, false),
    (12, 'group:retired', 'retired', null, 'group', '2024-01-01', false),
    (13, 'manual:auditors', 'auditors', null, 'group', null, false),
    (14, 'group:odd', 'odd', null, 'user', null, false)   -- a user whose foreign id looks like a group's
  ) v(id, fid, name, email, type, deleted_at, blocked);
-- New roles get ids after the ones above.
do $$ begin perform setval('public.role_id_seq', 1000); end $$;
-- Hand-granted memberships the identity provider knows nothing of; Mallory is in research.
insert into public.role_membership (group_id, member_id) values (13, 1), (11, 2);

create function pg_temp.message_of(p_sql text) returns text language plpgsql as $$
begin
  execute p_sql;
  return null;
exception when others then
  return sqlerrm;
end $$;
create function pg_temp.hint_of(p_sql text) returns text language plpgsql as $$
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
-- Rows this transaction inserted, updated and deleted so far, per table.
create function pg_temp.writes() returns table (relname name, ins bigint, upd bigint, del bigint) language sql as $$
  select s.relname, s.n_tup_ins, s.n_tup_upd, s.n_tup_del from pg_catalog.pg_stat_xact_user_tables s
   where (s.schemaname, s.relname) in (('public', 'role'), ('public', 'role_membership'), ('rolesync', 'role_membership_version'))
$$;
create temp view groups_of as
  select u.foreign_id as member, g.foreign_id as grp
    from public.role_membership m
    join public.role u on u.id = m.member_id
    join public.role g on g.id = m.group_id;

-- Structure.
select has_function('public', 'sync_oauth_login', array['text', 'text', 'text', 'text[]', 'text'],
  'sync_oauth_login(text, text, text, text[], text) exists');
select is(
  pg_catalog.pg_get_function_arguments('public.sync_oauth_login(text, text, text, text[], text)'::regprocedure),
  'member_foreign_id text, member_name text, member_email text, group_foreign_ids text[], managed_prefix text DEFAULT ''group:''::text, '
  'OUT member_id integer, OUT member_created boolean, OUT added integer[], OUT removed integer[], OUT created integer[], OUT skipped integer[]',
  'it takes (member, name, email, groups[, prefix = ''group:'']) and returns (member_id, member_created, added, removed, created, skipped)');
select ok(
  not (select proretset from pg_catalog.pg_proc where oid = 'public.sync_oauth_login(text, text, text, text[], text)'::regprocedure),
  'it returns exactly one row, not a set');
select volatility_is('public', 'sync_oauth_login', array['text', 'text', 'text', 'text[]', 'text'], 'volatile',
  'it is volatile: it writes, and needs a fresh snapshot per statement');
select isnt_definer('public', 'sync_oauth_login', array['text', 'text', 'text', 'text[]', 'text'], 'it runs as the caller');
select function_lang_is('public', 'sync_oauth_login', array['text', 'text', 'text', 'text[]', 'text'], 'plpgsql',
  'it is PL/pgSQL: the read after a lost insert race is a statement of its own, with a fresh snapshot');
select is(
  (select proconfig from pg_catalog.pg_proc where oid = 'public.sync_oauth_login(text, text, text, text[], text)'::regprocedure),
  array['search_path=pg_catalog, pg_temp'], 'it pins search_path, and sets nothing PostgreSQL 10 lacks');
select is_empty(
  $$select from pg_catalog.aclexplode((select proacl from pg_catalog.pg_proc
       where oid = 'public.sync_oauth_login(text, text, text, text[], text)'::regprocedure)) a
     where a.grantee = 0$$,
  'PUBLIC may not execute it');
select function_privs_are('public', 'sync_oauth_login', array['text', 'text', 'text', 'text[]', 'text'], 'rolesync_app',
  array['EXECUTE'], 'the application role may log users in');
select column_privs_are('public', 'role', 'email', 'rolesync_app', array['INSERT', 'SELECT', 'UPDATE'],
  'the application role may update role.email, to store a changed email');
select column_privs_are('public', 'role', 'updated_at', 'rolesync_app', array['INSERT', 'SELECT', 'UPDATE'],
  'and role.updated_at, which changes with it');
select column_privs_are('public', 'role', 'is_admin', 'rolesync_app', array['INSERT', 'SELECT', 'UPDATE'],
  'is_admin: since 000017 sync_aleph_login() applies the admin rules (sync_oauth_login leaves them to the app)');
select column_privs_are('public', 'role', 'is_blocked', 'rolesync_app', array['INSERT', 'SELECT'],
  'nor is_blocked');
select table_privs_are('public', 'role', 'rolesync_app', array['INSERT', 'SELECT'],
  'no table-wide UPDATE on role');
select ok(
  (select prosrc ~ 'on conflict \(foreign_id\) do nothing'
     from pg_catalog.pg_proc where oid = 'public.sync_oauth_login(text, text, text, text[], text)'::regprocedure),
  'the user is inserted with ON CONFLICT (foreign_id) DO NOTHING, so concurrent first logins cannot collide');
select is_empty(
  $$select from pg_catalog.pg_proc
     where oid = 'public.sync_oauth_login(text, text, text, text[], text)'::regprocedure
       and prosrc ~* '\m(starts_with|materialized|pg_current_xact_id\w*|plan_cache_mode)\M'$$,
  'its body uses nothing PostgreSQL 10 lacks (starts_with, MATERIALIZED, pg_current_xact_id, plan_cache_mode)');

-- A first login creates the user, as Aleph's load_or_create would, and syncs the token's groups.
create temp table first_login as
  select * from public.sync_oauth_login('oidc:carol', 'Carol', 'carol@example.org',
                                        array['group:research', 'group:ops', 'group:retired', 'group:ops']);
select is((select member_created from first_login), true, 'a first login reports the user created');
select is((select member_id from first_login), (select id from public.role where foreign_id = 'oidc:carol'),
  'and returns its id');
select results_eq(
  $$select name::text, email::text, type::text, is_admin, is_muted, is_blocked, is_tester, deleted_at is null
      from public.role where foreign_id = 'oidc:carol'$$,
  $$values ('Carol', 'carol@example.org', 'user', false, false, false, false, true)$$,
  'the user is typed user, with the token''s name and email and Aleph''s defaults for the flags');
select results_eq(
  $$select created_at, updated_at from public.role where foreign_id = 'oidc:carol'$$,
  $$values (now() at time zone 'utc', now() at time zone 'utc')$$,
  'created_at and updated_at are now, in UTC like Aleph');
select is((select count(*) from public.role where foreign_id = 'oidc:carol'), 1::bigint, 'exactly one row');
select is((select created from first_login),
  (select array_agg(id) from public.role where foreign_id = 'group:ops'), 'the new group is created, once');
select is((select added from first_login),
  (select array_agg(id order by id) from public.role where foreign_id in ('group:research', 'group:ops')),
  'the user joins the live groups');
select is((select skipped from first_login), array[12], 'the soft-deleted group is skipped, not resurrected');
select is((select removed from first_login), '{}'::integer[], 'nothing to remove on a first login');

-- Name fallbacks: the name, else the email, else the foreign id; '' counts as absent.
create temp table fallbacks as
  select v.fid, l.member_created
    from (values ('oidc:n1', 'Nora', 'n1@example.org'), ('oidc:n2', null, 'n2@example.org'),
                 ('oidc:n3', '', 'n3@example.org'), ('oidc:n4', null, null), ('oidc:n5', '', '')) v(fid, name, email)
   cross join lateral public.sync_oauth_login(v.fid, v.name, v.email, '{}') l;
select is((select bool_and(member_created) from fallbacks), true, 'each first login creates its user');
select results_eq(
  $$select foreign_id::text, name::text, email::text from public.role where foreign_id like 'oidc:n_' order by foreign_id$$,
  $$values ('oidc:n1', 'Nora', 'n1@example.org'),
           ('oidc:n2', 'n2@example.org', 'n2@example.org'),
           ('oidc:n3', 'n3@example.org', 'n3@example.org'),
           ('oidc:n4', 'oidc:n4', null),
           ('oidc:n5', 'oidc:n5', null)$$,
  'name falls back to the email, then the foreign id; an empty name or email counts as none and is not stored');

-- The next identical login writes nothing: no UPDATE, no INSERT, not even a sequence value.
create temp table writes_before as select * from pg_temp.writes();
create temp table seq_before as select last_value from public.role_id_seq;
create temp table row_before as select ctid::text as row_ctid, xmin::text as row_xmin from public.role where foreign_id = 'oidc:carol';
select results_eq(
  $$select member_id, member_created, added, removed, created, skipped
      from public.sync_oauth_login('oidc:carol', 'Carol', 'carol@example.org', array['group:ops', 'group:research', 'group:retired'])$$,
  $$select member_id, false, '{}'::integer[], '{}'::integer[], '{}'::integer[], array[12] from first_login$$,
  'the same login again: the same user, nothing created, nothing to do');
select results_eq('select * from pg_temp.writes() order by relname', 'select * from writes_before order by relname',
  'no row inserted, updated or deleted in role, role_membership or role_membership_version');
select is((select last_value from public.role_id_seq), (select last_value from seq_before),
  'not even a sequence value is drawn');
select results_eq($$select ctid::text, xmin::text from public.role where foreign_id = 'oidc:carol'$$,
  'select row_ctid, row_xmin from row_before', 'the user''s row keeps its version (same ctid, same xmin)');

-- A returning user: the email is stored when given and different; nothing else is touched.
update public.role set updated_at = '2024-01-01' where foreign_id = 'oidc:alice';
create temp table alice_before as select * from public.role where foreign_id = 'oidc:alice';
select results_eq(
  $$select member_id, member_created from public.sync_oauth_login('oidc:alice', 'Alice Renamed', null, array['group:research'])$$,
  $$values (1, false)$$, 'a returning user is found, not created');
select results_eq(
  $$select name::text, email::text, updated_at from public.role where id = 1$$,
  $$values ('Alice', 'alice@old.example', '2024-01-01'::timestamp)$$,
  'without an email the row is left alone: the name is not overwritten either, as in Aleph');
create temp table alice_writes as select * from pg_temp.writes() where relname = 'role';
select lives_ok($$select public.sync_oauth_login('oidc:alice', 'Alice', '', array['group:research'])$$,
  'an empty email counts as none');
select lives_ok($$select public.sync_oauth_login('oidc:alice', 'Alice', 'alice@old.example', array['group:research'])$$,
  'the stored email again');
select results_eq($$select * from pg_temp.writes() where relname = 'role'$$, 'select * from alice_writes',
  'neither updates the row');
select is((select email::text from public.role where id = 1), 'alice@old.example', 'the stored email stays');
select lives_ok($$select public.sync_oauth_login('oidc:alice', 'Alice', 'alice@new.example', array['group:research'])$$,
  'a login with a new email');
select results_eq(
  $$select email::text, updated_at, name::text, is_admin, created_at from public.role where id = 1$$,
  $$select 'alice@new.example', now() at time zone 'utc', name::text, is_admin, created_at from alice_before$$,
  'stores it, with updated_at, and touches no other column');
select results_eq(
  $$select ins, upd, del from pg_temp.writes() where relname = 'role'$$,
  $$select ins, upd + 1, del from alice_writes$$, 'with exactly one UPDATE of one row');
update public.role set email = null where id = 1;
select lives_ok($$select public.sync_oauth_login('oidc:alice', null, 'alice@new.example', array['group:research'])$$,
  'a login with an email when none is stored');
select is((select email::text from public.role where id = 1), 'alice@new.example', 'stores it');
select set_eq($$select grp::text from groups_of where member = 'oidc:alice'$$, array['group:research', 'manual:auditors'],
  'the hand-granted membership outside the prefix stays through every login');

-- Group semantics are sync_role_memberships_by_foreign_id's: prefix, removal, the core's lock.
select results_eq(
  $$select added, removed, created, skipped from public.sync_oauth_login('oidc:alice', 'Alice', null, '{}')$$,
  $$values ('{}'::integer[], array[11], '{}'::integer[], '{}'::integer[])$$,
  'an empty token removes every managed membership...');
select set_eq($$select grp::text from groups_of where member = 'oidc:alice'$$, array['manual:auditors'], '... and only those');
create temp table manual_login as
  select * from public.sync_oauth_login('oidc:alice', 'Alice', null, array['manual:auditors', 'manual:legal'], 'manual:');
select results_eq(
  $$select added, removed, created from manual_login$$,
  $$select array_agg(id), '{}'::integer[], array_agg(id) from public.role where foreign_id = 'manual:legal'$$,
  'another prefix is passed on: its new group is created and joined, nothing else removed');
select results_eq(
  $$select removed from public.sync_oauth_login('oidc:alice', 'Alice', null, array['manual:auditors'], '')$$,
  $$select array_agg(id) from public.role where foreign_id = 'manual:legal'$$,
  'and the empty prefix manages every group');
select ok(
  exists (select from pg_catalog.pg_locks
           where locktype = 'advisory' and classid = 1919904869 and objid = 1 and objsubid = 2
             and pid = pg_catalog.pg_backend_pid() and granted),
  'the member lock (1919904869, member id) is held until commit');

-- Refusals: a blocked user (RS006), a soft-deleted one (RS001), a role that is not a user (RS003).
-- Each token names a new group and drops the stored one, and offers a new email: none of it may happen.
create temp table roles_before as select id, foreign_id, name, email, updated_at, is_blocked, deleted_at from public.role;
create temp table members_before as select group_id, member_id from public.role_membership;
select throws_ok($$select public.sync_oauth_login('oidc:mallory', 'Mallory', 'mallory@new.example', array['group:brand-new'])$$,
  'RS006', 'member role ''oidc:mallory'' is blocked', 'a blocked user is refused (RS006)');
select is(pg_temp.hint_of($$select public.sync_oauth_login('oidc:mallory', null, null, '{}')$$),
  'An admin blocked this account (role.is_blocked); only an admin can unblock it.',
  'the hint says an admin blocked the account');
select throws_ok($$select public.sync_oauth_login('oidc:mallory', null, null, array['group:research'])$$,
  'RS006', null, 'even when the token changes nothing');
select throws_ok($$select public.sync_oauth_login('oidc:gone', 'Gone', 'gone@new.example', array['group:brand-new'])$$,
  'RS001', 'member role ''oidc:gone'' is soft-deleted', 'a soft-deleted user is refused (RS001)');
select throws_ok($$select public.sync_oauth_login('oidc:gone-and-blocked', null, null, '{}')$$,
  'RS001', null, 'a soft-deleted user that is also blocked is refused as soft-deleted (RS001): it is gone');
select throws_ok($$select public.sync_oauth_login('system:robot', null, 'robot@new.example', array['group:brand-new'])$$,
  'RS003', 'member role ''system:robot'' is not a user (system)', 'a system role cannot log in (RS003)');
select throws_ok($$select public.sync_oauth_login('group:research', null, null, '{}')$$,
  'RS003', 'member role ''group:research'' is not a user (group)', 'nor can a group (RS003)');
select set_eq('select id, foreign_id, name, email, updated_at, is_blocked, deleted_at from public.role', 'select * from roles_before',
  'after each refusal no role was created or changed: no email stored, no group created');
select set_eq('select group_id, member_id from public.role_membership', 'select * from members_before',
  'and no membership changed: the blocked user is still in research');

-- Bad input: an error with its SQLSTATE, and nothing is created, a first login's user included.
select throws_ok($$select public.sync_oauth_login(null, 'X', 'x@example.org', array['group:x'])$$,
  '22004', 'sync_oauth_login: member_foreign_id must not be null', 'a NULL member is refused (22004)');
select throws_ok($$select public.sync_oauth_login('oidc:new', 'X', 'x@example.org', null)$$,
  '22004', 'sync_oauth_login: group_foreign_ids must not be null', 'a NULL group list is refused (22004)');
select throws_ok($$select public.sync_oauth_login('oidc:new', 'X', 'x@example.org', array['group:x'], null)$$,
  '22004', 'sync_oauth_login: managed_prefix must not be null', 'a NULL prefix is refused (22004)');
select throws_ok($$select public.sync_oauth_login('', 'X', 'x@example.org', array['group:x'])$$,
  '22023', 'sync_oauth_login: member_foreign_id must not be empty', 'an empty member is refused (22023)');
select throws_ok(
  format($$select public.sync_oauth_login(%L, 'X', null, array['group:x'])$$, 'oidc:' || repeat('x', 2044)),
  '22001', null, 'a member foreign id longer than role.foreign_id allows is refused (22001)');
select ok(pg_temp.message_of(format($$select public.sync_oauth_login(%L, null, null, '{}')$$, 'oidc:' || repeat('x', 2044)))
          like 'member foreign id longer than 2048 characters: oidc:xxx%… (2049 characters)',
  'the message gives the limit read from the catalog, the start of the id and its length');
-- A first login with a bad group list: sync_role_memberships_by_foreign_id refuses it, and the new user goes too.
select throws_ok($$select public.sync_oauth_login('oidc:new', 'X', 'x@example.org', array['group:x', null])$$,
  '22004', null, 'a first login with a NULL group name is refused (22004)');
select throws_ok($$select public.sync_oauth_login('oidc:new', 'X', 'x@example.org', array['group:x', ''])$$,
  '22023', null, 'with an empty group name (22023)');
select throws_ok($$select public.sync_oauth_login('oidc:new', 'X', 'x@example.org', '{{group:a},{group:b}}'::text[])$$,
  '22023', null, 'with a multi-dimensional list (22023)');
select throws_ok($$select public.sync_oauth_login('oidc:new', 'X', 'x@example.org', array['group:x', 'admins'])$$,
  'RS005', 'groups outside the managed prefix ''group:'': ''admins''', 'with a name outside the prefix (RS005)');
select throws_ok(
  format($$select public.sync_oauth_login('oidc:new', 'X', 'x@example.org', array['group:x', %L])$$, 'group:' || repeat('x', 2043)),
  '22001', null, 'with an over-long group name (22001)');
select throws_ok($$select public.sync_oauth_login('oidc:new', 'X', 'x@example.org', array['group:x', 'group:odd'])$$,
  'RS003', null, 'with a name that belongs to a user (RS003)');
select throws_ok($$select public.sync_oauth_login('group:selfish', 'X', null, array['group:selfish'])$$,
  'RS004', null, 'with its own foreign id in the list (RS004)');
select is_empty($$select from public.role where foreign_id in ('oidc:new', 'group:selfish', 'group:x')$$,
  'no user (and no group) was created by any refused first login');
-- A returning user's new email does not survive an error in its group list either.
select throws_ok($$select public.sync_oauth_login('oidc:alice', 'Alice', 'alice@third.example', array['group:research', 'admins'])$$,
  'RS005', null, 'a returning user''s login with a bad group list is refused');
select is((select email::text from public.role where id = 1), 'alice@new.example',
  'and the new email it carried is not stored');
select set_eq('select id, foreign_id, name, email, updated_at, is_blocked, deleted_at from public.role',
  'select * from roles_before', 'after every refused call role is exactly as before');
select set_eq('select group_id, member_id from public.role_membership', 'select * from members_before',
  'and so is role_membership');
select lives_ok(
  format($$select public.sync_oauth_login(%L, null, null, '{}')$$, 'oidc:' || repeat('y', 2043)),
  'a member foreign id of exactly 2048 characters is fine');
select is((select name::text from public.role where length(foreign_id) = 2048), 'oidc:' || repeat('y', 2043),
  'and becomes the name when the token has neither name nor email');

-- The grants are enough: the application role logs a user in, and stores a changed email.
create temp table app_outcome (step text, member_created boolean, added integer[], sqlstate text);
grant insert on app_outcome to rolesync_app;
set local role rolesync_app;
insert into app_outcome (step, member_created, added)
select 'first', member_created, added from public.sync_oauth_login('oidc:app-user', 'App', 'app@example.org', array['group:app-team']);
insert into app_outcome (step, member_created, added)
select 'email', member_created, added from public.sync_oauth_login('oidc:app-user', 'App', 'app@new.example', array['group:app-team']);
do $$
begin
  perform public.sync_oauth_login('oidc:mallory', null, null, '{}');
exception when others then
  insert into app_outcome (step, sqlstate) values ('blocked', sqlstate);
end
$$;
reset role;
select results_eq(
  $$select step, member_created, cardinality(added) from app_outcome where step in ('first', 'email') order by step desc$$,
  $$values ('first', true, 1), ('email', false, 0)$$,
  'the application role creates a user and its group with only the granted privileges');
select results_eq($$select email::text from public.role where foreign_id = 'oidc:app-user'$$, $$values ('app@new.example')$$,
  'and stores a changed email');
select is((select sqlstate from app_outcome where step = 'blocked'), 'RS006', 'and is refused a blocked user');

-- 000017: the foreign-id lock first, before the user row is looked up or inserted.
do $$ begin perform sync_oauth_login('oidc:lock-first', 'L', null, '{}'); end $$;
select ok(exists (select from pg_catalog.pg_locks l
                   where l.locktype = 'advisory' and l.pid = pg_catalog.pg_backend_pid() and l.granted
                     and l.classid = 1919904870 and l.objsubid = 2
                     and l.objid::bigint = (pg_catalog.hashtext('oidc:lock-first')::bigint + 4294967296) % 4294967296),
  'sync_oauth_login takes the lock on (1919904870, hashtext(foreign id)), as sync_aleph_login does');

select * from finish();
rollback;
