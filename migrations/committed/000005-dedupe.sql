--! Previous: sha1:765737be44ae8aea3212ed9b032f6a0b841c75ff
--! Hash: sha1:10023ce9bdcec5340e8c4ca079eb9cb50751d5db
--! Message: dedupe

/*
 * Clean the table: duplicates and NULL rows go to role_membership_removed.
 * Writers are not blocked (the DELETE locks only the rows it removes), and
 * the guard trigger keeps new duplicates out from now on. Then validate the
 * NOT NULL check, which scans the table under SHARE UPDATE EXCLUSIVE: reads
 * and writes go on.
 */
select public.dedupe_role_memberships();

do $$
begin
  if exists (
    select from pg_catalog.pg_constraint c
     where c.conrelid = 'public.role_membership'::regclass
       and c.conname = 'role_membership_not_null'
       and not c.convalidated)
  then
    alter table public.role_membership validate constraint role_membership_not_null;
  end if;
end
$$;
