/*
 * Runs after every `rolesync migrate`, pending migrations or not. Where
 * Aleph had yet to reach 4.1, rolesync keyed role_membership with its own
 * rolesync_role_membership_key (000012) and left role_membership_pkey to
 * Aleph's revision 131674bde902. Once that revision has added the primary
 * key, the two unique indexes on (member_id, group_id) are one too many:
 * drop rolesync's (and, on PostgreSQL 10 and 11, the NOT NULL check that
 * stood in for NOT NULL columns). ALTER TABLE takes ACCESS EXCLUSIVE for a
 * moment; it waits at most lock_timeout and the runner retries.
 */
do $$
begin
  perform pg_catalog.set_config('lock_timeout', '1s', true);
  if pg_catalog.to_regclass('public.role_membership') is not null
     and exists (
       select from pg_catalog.pg_constraint c
        where c.conrelid = 'public.role_membership'::regclass and c.contype = 'p')
     and exists (
       select from pg_catalog.pg_constraint c
        where c.conrelid = 'public.role_membership'::regclass and c.conname = 'rolesync_role_membership_key')
  then
    raise notice 'dropping rolesync_role_membership_key: role_membership_pkey now keys role_membership';
    alter table public.role_membership drop constraint rolesync_role_membership_key;
  end if;
  -- On PostgreSQL 10 and 11 a validated check stood in for NOT NULL
  -- (migrations/compat/pg10-11/000007); the primary key made the columns NOT NULL.
  if pg_catalog.to_regclass('public.role_membership') is not null
     and exists (
       select from pg_catalog.pg_constraint c
        where c.conrelid = 'public.role_membership'::regclass and c.contype = 'p')
     and exists (
       select from pg_catalog.pg_constraint c
        where c.conrelid = 'public.role_membership'::regclass and c.conname = 'role_membership_not_null')
  then
    alter table public.role_membership drop constraint role_membership_not_null;
  end if;
end
$$;
