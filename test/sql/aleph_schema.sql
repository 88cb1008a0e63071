-- Aleph's tables as rolesync.create_aleph_schema creates them (the template is
-- built with it): exactly Aleph 4.1.6's Alembic head, whatever rolesync adds after.
begin;
set local search_path = public, tap;
select plan(9);

select enum_has_labels('public', 'role_type', array['user', 'group', 'system'],
  'role_type has Aleph''s labels in order');

select set_eq(
  $$select a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull,
           pg_catalog.pg_get_expr(d.adbin, d.adrelid)
      from pg_catalog.pg_attribute a
      left join pg_catalog.pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
     where a.attrelid = 'public.role'::regclass and a.attnum > 0 and not a.attisdropped$$,
  $$values ('id'::text, 'integer'::text, true, 'nextval(''role_id_seq''::regclass)'::text),
           ('api_key', 'character varying', false, null),
           ('api_key_digest', 'character varying', false, null),
           ('api_key_expiration_notification_sent', 'integer', false, null),
           ('api_key_expires_at', 'timestamp without time zone', false, null),
           ('created_at', 'timestamp without time zone', false, null),
           ('deleted_at', 'timestamp without time zone', false, null),
           ('email', 'character varying', false, null),
           ('foreign_id', 'character varying(2048)', true, null),
           ('is_admin', 'boolean', true, null),
           ('is_blocked', 'boolean', true, null),
           ('is_muted', 'boolean', true, null),
           ('is_tester', 'boolean', true, null),
           ('last_login_at', 'timestamp without time zone', false, null),
           ('locale', 'character varying', false, null),
           ('name', 'character varying', true, null),
           ('password_digest', 'character varying', false, null),
           ('reset_token', 'character varying', false, null),
           ('type', 'role_type', true, null),
           ('updated_at', 'timestamp without time zone', false, null)$$,
  'role has exactly Aleph 4.1.6''s columns (name, type, NOT NULL, default: none besides id)');

select hasnt_column('public', 'role', 'notified_at', 'role has no notified_at (Aleph dropped it in 2979a1322381)');

select set_eq(
  $$select c.conname::text, pg_catalog.pg_get_constraintdef(c.oid)
      from pg_catalog.pg_constraint c where c.conrelid = 'public.role'::regclass
       and c.contype <> 'n'$$, -- PostgreSQL 18 lists NOT NULL as constraints too; the columns say NOT NULL above
  $$values ('role_pkey'::text, 'PRIMARY KEY (id)'::text),
           ('role_foreign_id_key', 'UNIQUE (foreign_id)')$$,
  'role''s constraints: the key on id, and role_foreign_id_key');

select set_eq(
  $$select i.indexrelid::regclass::text, i.indisunique, pg_catalog.pg_get_indexdef(i.indexrelid, 1, true)
      from pg_catalog.pg_index i where i.indrelid = 'public.role'::regclass$$,
  $$values ('role_pkey'::text, true, 'id'::text),
           ('role_foreign_id_key', true, 'foreign_id'),
           ('ix_role_api_key_digest', true, 'api_key_digest'),
           ('ix_role_api_key_expires_at', false, 'api_key_expires_at')$$,
  'role''s indexes: the key, foreign_id, the unique ix_role_api_key_digest and ix_role_api_key_expires_at');

select is_empty(
  $$select i.indexrelid from pg_catalog.pg_index i
     where i.indrelid = 'public.role'::regclass and (i.indnatts <> 1 or i.indpred is not null or i.indexprs is not null)$$,
  'every index on role is on one plain column, without a predicate');

select set_eq(
  $$select a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull,
           pg_catalog.pg_get_expr(d.adbin, d.adrelid)
      from pg_catalog.pg_attribute a
      left join pg_catalog.pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
     where a.attrelid = 'public.role_membership'::regclass and a.attnum > 0 and not a.attisdropped$$,
  $$values ('group_id'::text, 'integer'::text, true, null::text),
           ('member_id', 'integer', true, null)$$,
  'role_membership has exactly group_id and member_id, integer NOT NULL, no defaults');

select set_eq(
  $$select c.conname::text, pg_catalog.pg_get_constraintdef(c.oid)
      from pg_catalog.pg_constraint c where c.conrelid = 'public.role_membership'::regclass
       and c.contype <> 'n'$$, -- PostgreSQL 18 lists NOT NULL as constraints too; the columns say NOT NULL above
  $$values ('role_membership_pkey'::text, 'PRIMARY KEY (member_id, group_id)'::text),
           ('role_membership_group_id_fkey', 'FOREIGN KEY (group_id) REFERENCES role(id)'),
           ('role_membership_member_id_fkey', 'FOREIGN KEY (member_id) REFERENCES role(id)')$$,
  'role_membership''s constraints: role_membership_pkey (member_id, group_id) and both references to role(id)');

select is(
  (select pg_catalog.pg_get_serial_sequence('public.role', 'id')), 'public.role_id_seq',
  'role.id is a serial: role_id_seq is owned by the column');

select * from finish();
rollback;
