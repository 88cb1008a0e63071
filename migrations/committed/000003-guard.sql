--! Previous: sha1:41e78fa07516769ee54f871da725cc6055c03655
--! Hash: sha1:9d873bbf3e7761b9cbb112d85bfc8b9974dae350
--! Message: guard

/*
 * From here until the primary key exists, no new duplicate can be written:
 * the guard trigger serialises writers per member and skips repeats.
 * CREATE TRIGGER waits for writers already running to finish (SHARE ROW
 * EXCLUSIVE), so every row written before it is visible to the dedupe.
 */
set local lock_timeout = '1s';

do $$
begin
  if not exists (
       select from pg_catalog.pg_constraint c
        where c.conrelid = 'public.role_membership'::regclass and c.contype = 'p')
     and not exists (
       select from pg_catalog.pg_trigger t
        where t.tgrelid = 'public.role_membership'::regclass
          and t.tgname = 'role_membership_guard')
  then
    create trigger role_membership_guard
      before insert or update of group_id, member_id on public.role_membership
      for each row execute function public.role_membership_guard();
  end if;
end
$$;
