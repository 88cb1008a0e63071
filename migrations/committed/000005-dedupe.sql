--! Previous: sha1:6ab1ab0f1d015d9d9f5b15e872fe3add6adb4dee
--! Hash: sha1:adda91d49cf4ead1bfb7ae3b5db32f6253bce49e
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
