/*
 * The condition of 000010 (its `--! RunIf:` header), which the runner and
 * the psql script evaluate before that migration. rolesync's own key index
 * is needed only where Aleph's Alembic has yet to run 131674bde902 (4.1),
 * which adds role_membership_pkey: there 000012 turns the index into
 * rolesync's UNIQUE constraint. Everywhere else the primary key stays, and
 * the build would be dropped again at once. This is the test of
 * rolesync.aleph_adds_primary_key() as 000012 made it, which does not exist
 * yet when 000010 runs. It answers "does rolesync key the table under its
 * own name?", which is also yes where no one else keys it: OpenAleph, whose
 * revisions are none of the ones below (000017 tells the two apart, with
 * rolesync.alembic_line(), for the messages). It reads the catalog and Aleph's
 * ledger only, and sets rolesync.run_migration (session) to on or off.
 * (000010's own comment, written before this file, says the build cannot be
 * conditional; its text is hashed, so it stays, and this header overrides it.
 * graphile-migrate's `migrate`, the development workflow, ignores the header
 * and builds the index everywhere; 000012 then drops it where the primary
 * key stays.)
 *
 * Skipped: role_membership_pkey keys this table to stay (Aleph 4.1 or later, or no Alembic ledger)
 */
do $$
declare
  v_run boolean;
begin
  if pg_catalog.to_regclass('public.alembic_version') is null then
    v_run := false;
  elsif exists (
    select from pg_catalog.pg_attribute a
     where a.attrelid = pg_catalog.to_regclass('public.role') and a.attname = 'api_key_digest' and not a.attisdropped)
  then
    v_run := false;
  else
    -- Dynamic: public.alembic_version may not exist when this block is compiled.
    execute $q$select exists (
                 select from public.alembic_version v
                  where v.version_num not in ('131674bde902', 'd46fc882ec6b', '31e24765dee3', '2c55cafd26ce'))$q$
       into v_run;
  end if;
  perform pg_catalog.set_config('rolesync.run_migration', case when v_run then 'on' else 'off' end, false);
end
$$;
