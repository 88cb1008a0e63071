--! Previous: sha1:8de6928c137857a0af2eb1ad2b5d6ac22439ce05
--! Hash: sha1:915f4a944fbef849c76201300a20fe7cdf14b18d
--! Message: validate not null check

/*
 * Validates role_membership_not_null where 000017 added it NOT VALID (no one
 * else keys the table: OpenAleph, or an unknown Alembic revision): the rows
 * already there are checked once, under SHARE UPDATE EXCLUSIVE, so logins
 * and writers go on. Every row is non-null already (the columns were NOT
 * NULL until 000017); new rows were checked from 000017 on. A validated
 * check is what `rolesync check` and the planner can rely on.
 */
set local lock_timeout = '1s';

do $$
begin
  if exists (select from pg_catalog.pg_constraint c
              where c.conrelid = 'public.role_membership'::regclass and c.conname = 'role_membership_not_null'
                and not c.convalidated) then
    alter table public.role_membership validate constraint role_membership_not_null;
  end if;
end
$$;
