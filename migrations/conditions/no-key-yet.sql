/*
 * The condition of 000006 and 000007 (their `--! RunIf:` headers), which
 * build and attach role_membership_pkey (rolesync_role_membership_key on
 * PostgreSQL 10 and 11) on a table that has no key. Run where the table has
 * none; skip where it has one: Aleph's primary key, 0.1.0's, or rolesync's
 * unique key.
 *
 * Why: adopting again after `rolesync uninstall` (or after the hand rollback
 * of the docs before 0.2.0) replays the chain on a table that uninstall left
 * keyed, before Aleph 4.1 under rolesync's name. 000006 then built a second
 * unique index named role_membership_pkey and 000007 made it the primary
 * key: two keys, and Aleph's own upgrade (131674bde902, ADD CONSTRAINT
 * role_membership_pkey PRIMARY KEY) failed with "multiple primary keys".
 * On a first adoption nothing changes: a keyless table gets the key as
 * before, and on a keyed one both were already no-ops. An INVALID index an
 * interrupted build left is no key: the beforeAllMigrations hook drops it,
 * and the build runs again. The header is not part of a migration's hash, so
 * the released files keep their ledger hashes.
 * Reads the catalog only; sets rolesync.run_migration (session) to on or off.
 *
 * Skipped: role_membership is keyed already
 */
do $$
begin
  perform pg_catalog.set_config('rolesync.run_migration',
    case when exists (
           select from pg_catalog.pg_constraint c
            where c.conrelid = pg_catalog.to_regclass('public.role_membership')
              and (c.contype = 'p' or (c.contype = 'u' and c.conname = 'rolesync_role_membership_key')))
         then 'off' else 'on' end,
    false);
end
$$;
