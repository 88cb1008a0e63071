--! Previous: sha1:c43bb22fb421787ced09bc7d8e7954f8dd881237
--! Hash: sha1:f4e604337f53fa88f1085205c121410fd49bf5eb
--! Message: guard
--! AllowInvalidHash

/*
 * PostgreSQL 10: 000003 with EXECUTE PROCEDURE, which every version accepts
 * (EXECUTE FUNCTION is 11+). The same trigger.
 */
/*
 * From here on every insert into role_membership goes through the guard
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
      before insert or update of group_id, member_id on public.role_membership
      for each row execute procedure public.role_membership_guard();
  end if;
end
$$;
