--! Previous: sha1:5ccdab5d7a3c327dc5099ab3db75a3840b714e63
--! Hash: sha1:18c6e51ac0e4fcb975d0939eb191463961437590
--! Message: guard

/*
 * From here on every writer of role_membership goes through the guard
 * trigger (see role_membership_guard in 000001): no new duplicate can be
 * written, so none can slip in between the dedupe and the unique index, and
 * Aleph's unpatched delete-then-insert path stays error-free after the key.
 * CREATE TRIGGER waits for writers already running to finish (SHARE ROW
 * EXCLUSIVE), so every row written before it is visible to the dedupe.
 */
set local lock_timeout = '1s';

do $$
begin
  if not exists (
    select from pg_catalog.pg_trigger t
     where t.tgrelid = 'public.role_membership'::regclass
       and t.tgname = 'role_membership_guard')
  then
    create trigger role_membership_guard
      before insert or update of group_id, member_id or delete on public.role_membership
      for each row execute function public.role_membership_guard();
  end if;
end
$$;
