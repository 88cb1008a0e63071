-- Structure of the tables and the view after every migration has run.
begin;
set local search_path = public, tap;
select plan(47);

select has_type('public', 'role_type', 'Aleph''s role_type exists');
select enum_has_labels('public', 'role_type', array['user', 'group', 'system'], 'role_type has Aleph''s labels in order');

select columns_are('public', 'role', array[
  'id', 'created_at', 'updated_at', 'deleted_at', 'foreign_id', 'name', 'email', 'api_key',
  'is_admin', 'is_muted', 'type', 'password_digest', 'reset_token', 'locale',
  'is_blocked', 'is_tester', 'last_login_at', 'api_key_expires_at',
  'api_key_expiration_notification_sent', 'api_key_digest'], 'role has Aleph 4.1.6''s columns (the standalone opt-in)');
select col_is_pk('public', 'role', 'id', 'role.id is the primary key');
select col_type_is('public', 'role', 'foreign_id', 'character varying(2048)', 'role.foreign_id is varchar(2048)');
select col_not_null('public', 'role', 'foreign_id', 'role.foreign_id is NOT NULL');
select col_is_unique('public', 'role', 'foreign_id', 'role.foreign_id is unique');
select col_type_is('public', 'role', 'type', 'role_type', 'role.type is the enum');
select col_type_is('public', 'role', 'deleted_at', 'timestamp without time zone', 'role.deleted_at is Aleph''s soft-delete column');

select columns_are('public', 'role_membership', array['group_id', 'member_id'], 'role_membership has Aleph''s two columns');
select col_type_is('public', 'role_membership', 'group_id', 'integer', 'group_id is integer');
select col_type_is('public', 'role_membership', 'member_id', 'integer', 'member_id is integer');
select col_not_null('public', 'role_membership', 'group_id', 'group_id is NOT NULL');
select col_not_null('public', 'role_membership', 'member_id', 'member_id is NOT NULL');
select col_is_pk('public', 'role_membership', array['member_id', 'group_id'], 'the key is (member_id, group_id), as Aleph 4.1''s');
select is(
  (select conname::text from pg_catalog.pg_constraint
    where conrelid = 'public.role_membership'::regclass and contype = 'p'),
  'role_membership_pkey', 'the key is named role_membership_pkey, as Aleph 4.1''s');
select index_is_unique('public', 'role_membership', 'role_membership_pkey', 'role_membership_pkey is unique');
select hasnt_index('public', 'role_membership', 'rolesync_role_membership_key',
  'without Aleph''s Alembic ledger the primary key stays, and the index 000010 built for rolesync''s own key is gone');
select is_empty(
  $$select conname from pg_catalog.pg_constraint
     where conrelid = 'public.role_membership'::regclass and contype in ('p', 'u')
       and conname <> 'role_membership_pkey'$$,
  'no other key on role_membership: one unique index on (member_id, group_id)');
select has_index('public', 'role_membership', 'role_membership_group_id_member_id_idx',
  array['group_id', 'member_id'], 'an index leads with group_id, for member listings');
select fk_ok('public', 'role_membership', 'group_id', 'public', 'role', 'id', 'group_id references role.id');
select fk_ok('public', 'role_membership', 'member_id', 'public', 'role', 'id', 'member_id references role.id');
select is_empty(
  $$select indexrelid::regclass from pg_catalog.pg_index
     where indrelid = 'public.role_membership'::regclass and not (indisvalid and indisready)$$,
  'every index on role_membership is valid');
select has_trigger('public', 'role_membership', 'role_membership_guard', 'the guard trigger stays after the key exists');
select is(
  -- PostgreSQL 10 prints EXECUTE PROCEDURE, its name for the same clause (EXECUTE FUNCTION is 11+).
  (select replace(pg_catalog.pg_get_triggerdef(oid), 'EXECUTE PROCEDURE', 'EXECUTE FUNCTION') from pg_catalog.pg_trigger
    where tgrelid = 'public.role_membership'::regclass and tgname = 'role_membership_guard'),
  'CREATE TRIGGER role_membership_guard BEFORE INSERT OR UPDATE OF group_id, member_id ON public.role_membership FOR EACH ROW EXECUTE FUNCTION role_membership_guard()',
  'the guard fires before each inserted or re-keyed row, not on deletes');
select is_empty(
  $$select conname from pg_catalog.pg_constraint
     where conrelid = 'public.role_membership'::regclass and contype = 'c'$$,
  'the NOT NULL check scaffolding is gone once the columns are NOT NULL');

-- rolesync's own tables live in schema rolesync (000012), out of Aleph's public.
select has_schema('rolesync', 'rolesync has a schema of its own');
select tables_are('rolesync', array['function_fingerprints', 'granted', 'installation', 'migrations', 'role_membership_removed',
                                    'role_membership_version'],
  'schema rolesync holds exactly the ledger, the archive, the version table and what it knows of itself (000016, own_state.sql)');

-- rolesync's own migration ledger (src/migrate.ts), not graphile-migrate's:
-- one row per committed migration, chained by hash as graphile-migrate chains them.
select columns_are('rolesync', 'migrations', array['filename', 'hash', 'previous_hash', 'date'],
  'the ledger has graphile-migrate''s four columns');
select col_is_pk('rolesync', 'migrations', 'filename', 'the ledger is keyed by the migration''s file number');
select col_is_unique('rolesync', 'migrations', 'hash', 'each hash is recorded once');
select fk_ok('rolesync', 'migrations', 'previous_hash', 'rolesync', 'migrations', 'hash',
  'each row names the hash before it');
select is((select count(*)::int from rolesync.migrations),
  (select count(*)::int from rolesync.migrations m where m.filename ~ '^\d{6}\.sql$' and m.hash ~ '^sha1:[0-9a-f]{40}$'),
  'every row is a file number and a sha1 hash');
select is((select count(*)::int from rolesync.migrations m
            where m.previous_hash is distinct from
                  (select p.hash from rolesync.migrations p where p.filename < m.filename order by p.filename desc limit 1)),
  0, 'the rows form one chain, in file order');
select ok(obj_description('rolesync.migrations'::regclass, 'pg_class') is not null, 'the ledger says what it is');
select hasnt_table('public', 'role_membership_removed', 'the archive is no longer in public');
select hasnt_table('public', 'role_membership_version', 'the version table is no longer in public');
select has_sequence('rolesync', 'role_membership_removed_id_seq', 'the archive''s identity sequence moved with it');

select columns_are('rolesync', 'role_membership_removed',
  array['id', 'group_id', 'member_id', 'reason', 'removed_at', 'removed_by'],
  'the archive keeps each removed row with a reason, a time and who removed it');
select col_is_pk('rolesync', 'role_membership_removed', 'id', 'each archived row has its own id');
select col_not_null('rolesync', 'role_membership_removed', 'reason', 'every archived row has a reason');
select throws_ok(
  $$insert into rolesync.role_membership_removed (group_id, member_id, reason) values (1, 2, 'whim')$$,
  '23514', null, 'the archive accepts only the known reasons');
select hasnt_fk('rolesync', 'role_membership_removed', 'the archive has no foreign keys: it outlives the roles');

select col_is_pk('rolesync', 'role_membership_version', 'member_id', 'one version row per member');
select columns_are('rolesync', 'role_membership_version', array['member_id', 'version', 'changed_at'],
  'a version row holds the member''s change count and when it last changed');

select has_view('public', 'role_membership_duplicates', 'the monitoring view exists');
select columns_are('public', 'role_membership_duplicates', array['group_id', 'member_id', 'copies'],
  'the view has (group_id, member_id, copies)');

select * from finish();
rollback;
