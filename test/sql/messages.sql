-- Bounded error messages (000013): a list of offending items names the first 20, then "and N more".
begin;
set local search_path = public, tap;
select plan(43);

-- The SQLSTATE and the message of the error a statement raises (NULL, NULL when it raises none).
create function pg_temp.error_of(p_sql text, out state text, out message text) language plpgsql as $$
begin
  execute p_sql;
exception when others then
  state := sqlstate;
  message := sqlerrm;
end $$;

-- The helper.
select has_function('rolesync', 'format_list', array['text[]', 'integer'], 'rolesync.format_list(text[], integer) exists');
select function_returns('rolesync', 'format_list', array['text[]', 'integer'], 'text', 'format_list returns text');
select volatility_is('rolesync', 'format_list', array['text[]', 'integer'], 'immutable',
  'format_list is immutable: it depends on its arguments only');
select isnt_definer('rolesync', 'format_list', array['text[]', 'integer'], 'format_list runs as the caller');
select is(
  (select proconfig from pg_catalog.pg_proc where oid = 'rolesync.format_list(text[], integer)'::regprocedure),
  array['search_path=pg_catalog, pg_temp'], 'format_list pins search_path');
select function_privs_are('rolesync', 'format_list', array['text[]', 'integer'], 'rolesync_app', array['EXECUTE'],
  'the application role may run format_list: the syncs it calls run as their caller, and call it to raise');
select is_empty(
  $$select from pg_catalog.aclexplode((select proacl from pg_catalog.pg_proc
       where oid = 'rolesync.format_list(text[], integer)'::regprocedure)) a where a.grantee = 0$$,
  'PUBLIC may not run format_list');
select is(rolesync.format_list(array['a', 'b', 'c']), 'a, b, c', 'a short list is named in full, in order');
select is(rolesync.format_list(array(select g::text from generate_series(1, 20) g)),
  (select string_agg(g::text, ', ' order by g) from generate_series(1, 20) g), 'exactly 20 items: all of them, no "more"');
select is(rolesync.format_list(array(select g::text from generate_series(1, 21) g)),
  (select string_agg(g::text, ', ' order by g) from generate_series(1, 20) g) || ', and 1 more', '21 items: 20, and 1 more');
select is(rolesync.format_list(array['c', 'a', 'b', 'd'], 2), 'c, a, and 2 more', 'max_items, and the order given is kept');
select is(rolesync.format_list(array['a', 'b'], 0), 'and 2 more', 'max_items 0: only the count');
select is(rolesync.format_list('{}'::text[]), null, 'an empty list gives NULL, which callers test');
select is(rolesync.format_list(null), null, 'so does NULL');
select is(rolesync.format_list(array['x', repeat('y', 5000)]), 'x, ' || repeat('y', 199) || '…',
  'an item longer than 200 characters is cut to 200, with an ellipsis');

-- Roles: a member, 25 users, 25 groups outside the prefix 'group:', and 25 users whose foreign ids look like groups'.
insert into public.role (id, foreign_id, name, type, is_admin, is_muted, is_blocked, is_tester)
select v.id, v.fid, v.fid, v.type::public.role_type, false, false, false, false
  from (select 1 as id, 'msg:member' as fid, 'user' as type
        union all select 200 + g, 'msg:user-' || g, 'user' from generate_series(1, 25) g
        union all select 300 + g, 'manual:' || g, 'group' from generate_series(1, 25) g
        union all select 400 + g, 'group:u' || lpad(g::text, 2, '0'), 'user' from generate_series(1, 25) g) v;
-- New roles (a first login's user) get ids after these.
do $$ begin perform setval('public.role_id_seq', 1000); end $$;

-- sync_role_memberships: 100,000 unknown ids (RS002).
create temp table e as
  select * from pg_temp.error_of(
    'select public.sync_role_memberships(1, array(select g from generate_series(100001, 200000) g))');
select is((select state from e), 'RS002', '100,000 unknown ids: still RS002');
select is((select message from e),
  'unknown or soft-deleted groups: ' || (select string_agg(g::text, ', ' order by g) from generate_series(100001, 100020) g)
    || ', and 99980 more',
  'the message names the first 20 ids, in order, and how many more');
select cmp_ok((select length(message) from e), '<', 2048, 'and stays under 2 KB (it was 690 KB)');
drop table e;

-- sync_role_memberships: 25 non-groups (RS003) and 25 unmanaged groups (RS005).
select throws_ok('select public.sync_role_memberships(1, array(select 200 + g from generate_series(1, 25) g))', 'RS003',
  'roles are not groups: ' || (select string_agg(format('%s (user)', 200 + g), ', ' order by g) from generate_series(1, 20) g)
    || ', and 5 more',
  '25 non-groups: RS003 names 20 with their type, and 5 more');
select throws_ok($$select public.sync_role_memberships(1, array(select 300 + g from generate_series(1, 25) g), 'group:')$$, 'RS005',
  'groups outside the managed prefix ''group:'': '
    || (select string_agg(format('%s (manual:%s)', 300 + g, g), ', ' order by g) from generate_series(1, 20) g) || ', and 5 more',
  '25 unmanaged groups: RS005 names 20 with their foreign ids, and 5 more');
select throws_ok('select public.sync_role_memberships(1, array[100001, 100002])', 'RS002',
  'unknown or soft-deleted groups: 100001, 100002', 'a short list is named in full, as before');

-- sync_role_memberships_by_foreign_id: 100,000 names outside the prefix (RS005).
create temp table e as
  select * from pg_temp.error_of(
    $$select public.sync_role_memberships_by_foreign_id('msg:member',
        array(select 'team:' || lpad(g::text, 6, '0') from generate_series(1, 100000) g))$$);
select is((select state from e), 'RS005', 'by foreign id, 100,000 names outside the prefix: still RS005');
select is((select message from e),
  'groups outside the managed prefix ''group:'': '
    || (select string_agg(format('%L', 'team:' || lpad(g::text, 6, '0')), ', ' order by g) from generate_series(1, 20) g)
    || ', and 99980 more',
  'the message names the first 20 names, in name order, and how many more');
select cmp_ok((select length(message) from e), '<', 2048, 'and stays under 2 KB');
drop table e;

-- The other lists of by foreign id: RS003, 22001, 22023.
select throws_ok($$select public.sync_role_memberships_by_foreign_id('msg:member', array(select 'group:u' || lpad(g::text, 2, '0') from generate_series(1, 25) g))$$,
  'RS003',
  'names belong to roles that are not groups: '
    || (select string_agg(format('%L (user)', 'group:u' || lpad(g::text, 2, '0')), ', ' order by g) from generate_series(1, 20) g)
    || ', and 5 more',
  '25 names of users: RS003 names 20 with their type, and 5 more');
create temp table e as
  select * from pg_temp.error_of(
    $$select public.sync_role_memberships_by_foreign_id('msg:member',
        array(select 'group:' || lpad(g::text, 2, '0') || repeat('x', 2050) from generate_series(1, 25) g))$$);
select is((select state from e), '22001', '25 over-long names: still 22001');
select is((select message from e),
  'group foreign ids longer than 2048 characters: '
    || (select string_agg(format('%s… (2058 characters)', left('group:' || lpad(g::text, 2, '0') || repeat('x', 2050), 40)), ', ' order by g)
          from generate_series(1, 20) g)
    || ', and 5 more',
  'the message names 20, each by its start and length, and 5 more');
select cmp_ok((select length(message) from e), '<', 2048, 'and stays under 2 KB');
drop table e;
select throws_ok($$select public.sync_role_memberships_by_foreign_id('msg:member', array['group:', '', 'group:ok'])$$, '22023',
  'empty group names: '''', ''group:''', 'empty names: both named, as before');
-- A name outside the prefix is not length-checked first: each listed name is cut to 200 characters.
create temp table e as
  select * from pg_temp.error_of(
    $$select public.sync_role_memberships_by_foreign_id('msg:member',
        array(select 'team:' || lpad(g::text, 2, '0') || repeat('z', 100000) from generate_series(1, 25) g))$$);
select is((select state from e), 'RS005', '25 names of 100,000 characters outside the prefix: still RS005');
select matches((select message from e), '^groups outside the managed prefix ''group:'': ''team:01z+…, ''team:02z+….*, and 5 more$',
  'the message names 20, each cut short, and 5 more');
select cmp_ok((select length(message) from e), '<', 20 * 202 + 100, 'and stays near 4 KB, not 2.5 MB');
drop table e;

-- sync_oauth_login: 100,000 names outside the prefix in a first login (RS005, raised by by foreign id).
create temp table e as
  select * from pg_temp.error_of(
    $$select public.sync_oauth_login('msg:new-user', 'New', null,
        array(select 'team:' || lpad(g::text, 6, '0') from generate_series(1, 100000) g))$$);
select is((select state from e), 'RS005', 'a login with 100,000 names outside the prefix: still RS005');
select is((select message from e),
  'groups outside the managed prefix ''group:'': '
    || (select string_agg(format('%L', 'team:' || lpad(g::text, 6, '0')), ', ' order by g) from generate_series(1, 20) g)
    || ', and 99980 more',
  'the message names the first 20 names and how many more');
select cmp_ok((select length(message) from e), '<', 2048, 'and stays under 2 KB');
drop table e;
select is_empty($$select from public.role where foreign_id = 'msg:new-user'$$, 'and the new user was not created');

-- The application role gets the SQLSTATE, not 42501: it may run format_list.
create temp table app_outcome (step text, state text, message text);
grant insert on app_outcome to rolesync_app;
set local role rolesync_app;
insert into app_outcome
select 'by id', * from pg_temp.error_of('select public.sync_role_memberships(1, array(select g from generate_series(100001, 100030) g))');
insert into app_outcome
select 'by foreign id', * from pg_temp.error_of($$select public.sync_role_memberships_by_foreign_id('msg:member', array['team:a', 'team:b'])$$);
insert into app_outcome
select 'login', * from pg_temp.error_of($$select public.sync_oauth_login('msg:member', null, null, array['group:u01'])$$);
reset role;
select results_eq($$select state, message from app_outcome where step = 'by id'$$,
  $$values ('RS002', 'unknown or soft-deleted groups: '
             || (select string_agg(g::text, ', ' order by g) from generate_series(100001, 100020) g) || ', and 10 more')$$,
  'the application role: RS002 and its bounded message');
select results_eq($$select state, message from app_outcome where step = 'by foreign id'$$,
  $$values ('RS005', 'groups outside the managed prefix ''group:'': ''team:a'', ''team:b''')$$,
  'the application role: RS005 by foreign id');
select results_eq($$select state, message from app_outcome where step = 'login'$$,
  $$values ('RS003', 'names belong to roles that are not groups: ''group:u01'' (user)')$$,
  'the application role: RS003 through sync_oauth_login');

-- PostgreSQL 10 and later: the restated bodies use left(), not starts_with() (11+).
select is_empty(
  $$select p.oid::regprocedure from pg_catalog.pg_proc p
     where p.pronamespace in ('public'::regnamespace, 'rolesync'::regnamespace) and p.prosrc ~ 'starts_with'$$,
  'no function calls starts_with()');
-- Every list-naming error goes through format_list.
select ok((select prosrc ~ 'rolesync\.format_list\(v_unknown' and prosrc !~ 'string_agg' from pg_catalog.pg_proc
            where oid = 'public.sync_role_memberships(integer, integer[], text)'::regprocedure),
  'sync_role_memberships formats its lists with format_list only');
select ok((select prosrc !~ 'string_agg' and (length(prosrc) - length(replace(prosrc, 'rolesync.format_list(', ''))) / 21 = 4
             from pg_catalog.pg_proc where oid = 'public.sync_role_memberships_by_foreign_id(text, text[], text)'::regprocedure),
  'sync_role_memberships_by_foreign_id formats its four lists with format_list only');
select ok((select prosrc !~ 'string_agg' from pg_catalog.pg_proc
            where oid = 'public.sync_oauth_login(text, text, text, text[], text)'::regprocedure),
  'sync_oauth_login lists nothing itself');

select * from finish();
rollback;
