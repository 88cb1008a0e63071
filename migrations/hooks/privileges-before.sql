/*
 * Runs before pending migrations: remembers, for this session, which
 * privileges every role holds directly on Aleph's objects (role, its
 * columns, role_id_seq, role_membership), before any migration of this run
 * grants one. Why: `rolesync uninstall` must revoke only what rolesync
 * added. The application role usually owns Aleph's tables, or holds the same
 * privileges for Aleph's own code; revoking those would break Aleph. So the
 * migrations that grant call rolesync.record_grants() (000016 on), which
 * records in rolesync.granted every direct ACL entry that is there now and
 * was not in this snapshot.
 *
 * Direct entries, not has_table_privilege(): a role that had a privilege
 * through a group still gets an entry of its own from rolesync's GRANT, and
 * revoking that entry later leaves the group's privilege, and so Aleph,
 * alone. An owner's implicit privileges count as entries (acldefault), so
 * nothing is ever recorded, and nothing revoked, for the owner.
 *
 * Session-scoped (temporary): the runner and the psql script run the hooks
 * and the migrations on one connection. The first snapshot of a session
 * wins. rolesync_snapshot says whether rolesync had granted anything yet when
 * it was taken (its first function absent): only then does the record cover
 * the grants of 000001-000015 too. A run interrupted and retried on a new
 * connection, or an install older than 000016, records less, and uninstall
 * then revokes less: never more than rolesync added.
 */
create or replace function pg_temp.rolesync_acl_entries()
returns table (object text, column_name text, grantee oid, privilege text)
language sql
stable
set search_path = pg_catalog, pg_temp
as $$
  -- Qualified by hand: a regclass's text depends on the search_path, which differs between the
  -- hook's session and rolesync.record_grants().
  select pg_catalog.format('%I.%I', n.nspname, c.relname), ''::text, a.grantee, a.privilege_type
    from pg_catalog.pg_class c
    join pg_catalog.pg_namespace n on n.oid = c.relnamespace,
         pg_catalog.aclexplode(coalesce(c.relacl,
                                        pg_catalog.acldefault(case when c.relkind = 'S' then 's' else 'r' end::"char",
                                                              c.relowner))) a
   where c.oid in (pg_catalog.to_regclass('public.role'),
                   pg_catalog.to_regclass('public.role_id_seq'),
                   pg_catalog.to_regclass('public.role_membership'))
  union all
  select pg_catalog.format('%I.%I', n.nspname, c.relname), att.attname::text, a.grantee, a.privilege_type
    from pg_catalog.pg_class c
    join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    join pg_catalog.pg_attribute att
      on att.attrelid = c.oid and att.attnum > 0 and not att.attisdropped and att.attacl is not null,
         pg_catalog.aclexplode(att.attacl) a
   where c.oid in (pg_catalog.to_regclass('public.role'), pg_catalog.to_regclass('public.role_membership'))
$$;

do $$
begin
  if pg_catalog.to_regclass('pg_temp.rolesync_privileges_before') is null then
    create temporary table rolesync_privileges_before as
      select e.object, e.column_name, e.grantee, e.privilege from pg_temp.rolesync_acl_entries() e;
    create temporary table rolesync_snapshot as
      select pg_catalog.to_regprocedure('public.sync_role_memberships(integer, integer[], text)') is null
               as before_rolesync,
             pg_catalog.clock_timestamp() as taken_at;
  end if;
end
$$;
