/*
 * Runs before pending migrations, so before 000001. rolesync works on
 * Aleph's tables and must not create them behind Aleph's back: Aleph's own
 * first Alembic revision then fails (`type "role_type" already exists`), and
 * 000001's fallback shape is Aleph's of years ago. So:
 * - public.role and public.role_membership both there: nothing to do (an
 *   Aleph database keeps its own tables, whatever their version);
 * - either missing: refuse with RS012, before anything of ours exists;
 * - unless the session opts in (rolesync.create_aleph_schema = on: what
 *   `rolesync migrate --create-aleph-schema` and runMigrations({
 *   createAlephSchema: true }) set): a standalone database then gets them
 *   here, exactly as Aleph 4.1.6's Alembic head has them (no defaults besides
 *   id, as Aleph supplies them from Python), and 000001 finds them in place.
 * One DO block: atomic in psql too, e.g.
 *   psql -c 'set rolesync.create_aleph_schema = on' -f migrations/hooks/aleph-tables.sql
 */
do $$
declare
  v_setting text := pg_catalog.current_setting('rolesync.create_aleph_schema', true);
  v_create boolean;
  v_missing text;
  v_present text;
begin
  begin
    v_create := coalesce(nullif(v_setting, '')::boolean, false);
  exception when invalid_text_representation then
    raise exception using
      errcode = '22023',
      message = format('rolesync.create_aleph_schema must be on or off, not %L', v_setting);
  end;

  select string_agg(format('no %s', t.name), ' and ' order by t.n) filter (where not t.found and t.n > 1),
         string_agg(t.name, ', ' order by t.n) filter (where t.found)
    into v_missing, v_present
    from (values (1, 'public.role_type', pg_catalog.to_regtype('public.role_type') is not null),
                 (2, 'public.role', pg_catalog.to_regclass('public.role') is not null),
                 (3, 'public.role_membership', pg_catalog.to_regclass('public.role_membership') is not null))
         as t(n, name, found);

  if v_missing is null then
    return;
  end if;

  if not v_create then
    raise exception using
      errcode = 'RS012',
      message = format('Aleph''s tables are missing: this database has %s', v_missing),
      hint = 'Install Aleph''s schema first (`aleph upgrade`), then migrate. For a standalone database without Aleph, '
             'let rolesync create Aleph''s tables: `rolesync migrate --create-aleph-schema`, '
             'runMigrations({ createAlephSchema: true }), or in SQL: set rolesync.create_aleph_schema = on.';
  end if;

  -- Half of Aleph is not a standalone database: adding the other half could only guess.
  if v_present is not null then
    raise exception using
      errcode = 'RS012',
      message = format('Aleph''s tables are incomplete: this database has %s but %s', v_present, v_missing),
      hint = 'Finish or repair Aleph''s schema (`aleph upgrade`), then migrate. '
             'rolesync creates Aleph''s tables only where none of role_type, role and role_membership exists.';
  end if;

  create type public.role_type as enum ('user', 'group', 'system');

  create table public.role (
    id serial primary key,
    created_at timestamp,
    updated_at timestamp,
    deleted_at timestamp,
    foreign_id varchar(2048) not null,
    name varchar not null,
    email varchar,
    api_key varchar,
    is_admin boolean not null,
    is_muted boolean not null,
    type public.role_type not null,
    password_digest varchar,
    reset_token varchar,
    locale varchar,
    is_blocked boolean not null,
    is_tester boolean not null,
    last_login_at timestamp,
    api_key_expires_at timestamp,
    api_key_expiration_notification_sent integer,
    api_key_digest varchar,
    constraint role_foreign_id_key unique (foreign_id)
  );
  create index ix_role_api_key_expires_at on public.role using btree (api_key_expires_at);
  create unique index ix_role_api_key_digest on public.role using btree (api_key_digest);

  create table public.role_membership (
    group_id integer not null,
    member_id integer not null,
    constraint role_membership_pkey primary key (member_id, group_id),
    constraint role_membership_group_id_fkey foreign key (group_id) references public.role (id),
    constraint role_membership_member_id_fkey foreign key (member_id) references public.role (id)
  );

  raise notice 'created Aleph 4.1.6''s role_type, role and role_membership (rolesync.create_aleph_schema is on)';
end
$$;
