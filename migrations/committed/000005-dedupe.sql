--! Previous: sha1:85165da6d6f09b5554405f30db278794b3c3ac7b
--! Hash: sha1:5e7d8404a027c1bee55a546374f4d7b73f19267d
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
