/*
 * Runs after every `rolesync migrate`, pending migrations or not: leaves
 * role_membership with exactly one unique key on (member_id, group_id),
 * under the name Aleph's state calls for. ALTER TABLE takes ACCESS EXCLUSIVE
 * for a moment; it waits at most lock_timeout and the runner retries.
 *
 * Both a primary key and rolesync_role_membership_key, one is too many:
 * - Aleph's Alembic has yet to run 131674bde902 (rolesync.aleph_adds_primary_key(),
 *   decided from Alembic's ledger, never from a name): that revision adds
 *   role_membership_pkey and fails on a table with any primary key, so the
 *   primary key goes and rolesync's stays. Such a primary key is rolesync's
 *   own: 0.1.0's, or one an adoption after a hand rollback built again
 *   before 0.2.0 (the 42P07 path);
 * - otherwise Aleph's revision (or the table's own primary key) keys it, and
 *   rolesync's goes.
 * The validated check role_membership_not_null stood in for NOT NULL columns
 * (PostgreSQL 10 and 11, or an adoption replayed on a table already keyed);
 * once both columns are NOT NULL it says nothing more, and goes.
 */
do $$
declare
  v_primary name;
begin
  perform pg_catalog.set_config('lock_timeout', '1s', true);
  if pg_catalog.to_regclass('public.role_membership') is null then
    return;
  end if;
  select c.conname into v_primary
    from pg_catalog.pg_constraint c
   where c.conrelid = 'public.role_membership'::regclass and c.contype = 'p';
  if v_primary is not null
     and exists (
       select from pg_catalog.pg_constraint c
        where c.conrelid = 'public.role_membership'::regclass and c.conname = 'rolesync_role_membership_key')
  then
    if pg_catalog.to_regprocedure('rolesync.aleph_adds_primary_key()') is not null
       and rolesync.aleph_adds_primary_key() then
      raise notice 'dropping % on role_membership: Aleph''s 4.1 upgrade adds role_membership_pkey and fails on any primary key; rolesync_role_membership_key keys the table until then', v_primary;
      execute pg_catalog.format('alter table public.role_membership drop constraint %I', v_primary);
    else
      raise notice 'dropping rolesync_role_membership_key: role_membership_pkey now keys role_membership';
      alter table public.role_membership drop constraint rolesync_role_membership_key;
    end if;
  end if;
  if exists (
       select from pg_catalog.pg_constraint c
        where c.conrelid = 'public.role_membership'::regclass and c.conname = 'role_membership_not_null')
     and (select pg_catalog.bool_and(a.attnotnull) from pg_catalog.pg_attribute a
           where a.attrelid = 'public.role_membership'::regclass and a.attname in ('group_id', 'member_id'))
  then
    raise notice 'dropping role_membership_not_null: group_id and member_id are NOT NULL';
    alter table public.role_membership drop constraint role_membership_not_null;
  end if;
end
$$;
