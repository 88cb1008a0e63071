/*
 * `rolesync uninstall`'s plan: what to run, in which phase, and why, read
 * from the catalog; and what stays, and why. `rolesync uninstall` (the
 * CLI) and the psql script (`rolesync sql --uninstall`) both run this
 * function and execute its statements, so the two cannot differ; with
 * --dry-run they only print it.
 *
 * A temporary function: uninstall must work where rolesync is only partly
 * there (an interrupted install, a database rolesync 0.1.0 migrated, one
 * rolled back by hand before 0.2.0), so it relies on nothing rolesync
 * installs, and leaves nothing behind when the session ends.
 *
 * Phases, in the order the callers run them:
 * - prepare: each statement alone, outside a transaction (CREATE or DROP
 *   INDEX CONCURRENTLY: writers go on);
 * - transaction: all in one transaction with lock_timeout 1s, role_membership
 *   locked first (the order a sync takes its locks in); the CLI retries the
 *   whole transaction when a lock is not granted in time (55P03), and
 *   nothing is changed by an attempt that fails;
 * - concurrent: each alone, outside a transaction (DROP INDEX CONCURRENTLY);
 * - keep: no statement; what stays, and why.
 *
 * The rules:
 * - role_membership is never left without a key (without one, the original
 *   bug returns). Whose key it is comes from Aleph's Alembic state
 *   (p_alembic_line: migrations/conditions/alembic-line.sql, the test of
 *   rolesync.alembic_line()), never from a constraint's name:
 *   0.1.0 created role_membership_pkey on Aleph 4.0 databases.
 *   - Aleph's 4.1 upgrade still to come (it adds role_membership_pkey, and
 *     fails on any primary key): the key that stays is
 *     rolesync_role_membership_key. A primary key there is rolesync's own
 *     and is swapped for it (its index built first, concurrently). Running
 *     uninstall again after Aleph's upgrade drops it.
 *   - Aleph 4.1+, or a database without Aleph's Alembic (standalone): the
 *     primary key stays; rolesync's own key, redundant beside it, goes.
 *     Without a primary key, rolesync's key stays: no one else keys the table.
 *   - No key at all (an install interrupted before its key): RS014, nothing
 *     changed; `rolesync migrate` finishes the key first.
 * - Grants: only the privileges rolesync.granted recorded (those the
 *   grantee lacked before rolesync granted them) are revoked. Without a
 *   complete record (installed before 0.2.0 recorded them), none on Aleph's
 *   objects: the keep rows list what rolesync granted then.
 * - The archive (rolesync.role_membership_removed, or public's on a 0.1.0
 *   database) stays unless p_drop_archive: it is the only record of the rows
 *   the dedupe removed. Schema rolesync stays with it, and only with it.
 * - rolesync's ledger goes, and rolesync's rows of graphile_migrate.migrations
 *   (0.1.0's): only those whose file name and hash are rolesync's
 *   (p_filenames, p_hashes), never another application's. Where that leaves
 *   graphile-migrate's schema holding nothing but its two empty tables, which
 *   only 0.1.0 made, it goes too.
 * - A ledger this package does not know (a newer rolesync's): RS013, nothing
 *   changed. Uninstall with that version.
 *
 * p_public_names: rolesync's objects in public, read from its migrations
 * (src/objects.ts), so that a later migration's is dropped without a change here.
 */
create or replace function pg_temp.rolesync_uninstall_plan(
  p_drop_archive boolean,
  p_alembic_line text,
  p_filenames text[],
  p_hashes text[],
  p_public_names text[]
)
returns table (step integer, phase text, statement text, why text)
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
  v_rm regclass := pg_catalog.to_regclass('public.role_membership');
  v_pk name;
  v_own boolean := false;
  v_own_index_valid boolean;
  v_check boolean := false;
  v_foreign text;
  v_obj record;
  v_n integer := 0;
  v_tx text[] := '{}';
  v_tx_why text[] := '{}';
  v_recorded boolean := false;
  v_app_role text;
  v_archive text;
  v_archive_rows bigint;
  v_keeps_schema boolean;
  v_grantees text;
  v_gm_left boolean;
  v_aleph_adds boolean := p_alembic_line = 'aleph-before-4.1';
begin
  -- A newer rolesync's ledger: its objects are not all known here.
  if pg_catalog.to_regclass('rolesync.migrations') is not null then
    execute 'select pg_catalog.min(r.filename) from rolesync.migrations r
              where not exists (select from unnest($1, $2) as o(f, h) where o.f = r.filename and o.h = r.hash)'
       into v_foreign using p_filenames, p_hashes;
    if v_foreign is not null then
      raise exception using errcode = 'RS013',
        message = pg_catalog.format('rolesync.migrations holds %s, which this version of rolesync does not know', v_foreign),
        hint = 'Nothing was changed. Uninstall with the rolesync that migrated this database (or a later one): it knows what its migrations added.';
    end if;
  end if;

  if v_rm is not null then
    select c.conname into v_pk from pg_catalog.pg_constraint c where c.conrelid = v_rm and c.contype = 'p';
    v_own := exists (select from pg_catalog.pg_constraint c
                      where c.conrelid = v_rm and c.conname = 'rolesync_role_membership_key');
    select i.indisvalid and i.indisready into v_own_index_valid
      from pg_catalog.pg_index i
     where i.indexrelid = pg_catalog.to_regclass('public.rolesync_role_membership_key') and i.indrelid = v_rm;
    v_check := exists (select from pg_catalog.pg_constraint c
                        where c.conrelid = v_rm and c.conname = 'role_membership_not_null');

    -- The key.
    if v_pk is null and not v_own then
      raise exception using errcode = 'RS014',
        message = 'role_membership has no key: uninstalling now would leave it without one, and the duplicate-row bug would return',
        hint = 'Nothing was changed. Run `rolesync migrate` to finish adopting (it dedupes and keys the table online), then `rolesync uninstall`.';
    end if;
    if v_aleph_adds then
      if not v_own then
        -- A primary key of rolesync's own (0.1.0's): swapped for rolesync's name, under which Aleph's upgrade passes.
        if v_own_index_valid is not null and not v_own_index_valid then
          v_n := v_n + 1; step := v_n; phase := 'prepare';
          statement := 'drop index concurrently if exists public.rolesync_role_membership_key';
          why := 'an interrupted build left this index INVALID; it is built again';
          return next;
        end if;
        if v_own_index_valid is null or not v_own_index_valid then
          v_n := v_n + 1; step := v_n; phase := 'prepare';
          statement := 'create unique index concurrently if not exists rolesync_role_membership_key on public.role_membership using btree (member_id, group_id)';
          why := pg_catalog.format('the index of the key that stays: %s is rolesync''s, and Aleph''s 4.1 upgrade fails on any primary key', v_pk);
          return next;
        end if;
        v_tx := v_tx || pg_catalog.format(
          'alter table public.role_membership add constraint rolesync_role_membership_key unique using index rolesync_role_membership_key, drop constraint %I', v_pk);
        v_tx_why := v_tx_why || pg_catalog.format(
          '%s is rolesync''s (Aleph''s Alembic has yet to add role_membership_pkey): the table stays keyed, under rolesync''s name, in one statement', v_pk);
      elsif v_pk is not null then
        v_tx := v_tx || pg_catalog.format('alter table public.role_membership drop constraint %I', v_pk);
        v_tx_why := v_tx_why || pg_catalog.format(
          '%s is rolesync''s (Aleph''s Alembic has yet to add role_membership_pkey, and fails on any primary key); rolesync_role_membership_key keys the table', v_pk);
      end if;
      v_n := v_n + 1; step := v_n; phase := 'keep'; statement := null;
      why := 'the key rolesync_role_membership_key (UNIQUE (member_id, group_id))'
             || case when v_check then ' and the check role_membership_not_null' else '' end
             || ': Aleph''s 4.1 upgrade adds role_membership_pkey, and passes beside it; run `rolesync uninstall` again after that upgrade to drop it. Without a key the duplicate-row bug returns.';
      return next;
    else
      if v_pk is not null then
        if v_own then
          v_tx := v_tx || 'alter table public.role_membership drop constraint rolesync_role_membership_key'::text;
          v_tx_why := v_tx_why || pg_catalog.format('%s keys the table: rolesync''s own key beside it is redundant', v_pk);
        elsif v_own_index_valid is not null then
          v_tx := v_tx || 'drop index if exists public.rolesync_role_membership_key'::text;
          v_tx_why := v_tx_why || 'an index rolesync built for its own key, attached to nothing'::text;
        end if;
        if v_check then
          v_tx := v_tx || 'alter table public.role_membership drop constraint role_membership_not_null'::text;
          v_tx_why := v_tx_why || pg_catalog.format('%s makes the columns NOT NULL: the check rolesync added says nothing more', v_pk);
        end if;
        v_n := v_n + 1; step := v_n; phase := 'keep'; statement := null;
        why := pg_catalog.format('the primary key %s: %s Without a key the duplicate-row bug returns.', v_pk,
                 case when pg_catalog.to_regclass('public.alembic_version') is not null
                      then 'Aleph''s Alembic (4.1 or later) declares it.'
                      else 'no Alembic ledger here (a standalone database): rolesync added it, and it stays with the data.' end);
        return next;
      else
        v_n := v_n + 1; step := v_n; phase := 'keep'; statement := null;
        why := 'the key rolesync_role_membership_key (UNIQUE (member_id, group_id))'
               || case when v_check then ' and the check role_membership_not_null' else '' end
               || case p_alembic_line
                    when 'openaleph' then ': OpenAleph''s Alembic adds no key of its own'
                    when 'unknown' then ': the Alembic revision is not one rolesync knows, and no one else is expected to key the table'
                    else ': nothing else keys this table' end
               || ', and without a key the duplicate-row bug returns.';
        return next;
      end if;
    end if;

    if pg_catalog.to_regclass('public.alembic_version') is null and v_rm is not null then
      v_n := v_n + 1; step := v_n; phase := 'keep'; statement := null;
      why := 'Aleph''s tables role, role_membership and type role_type, with every row: a database without Aleph''s Alembic may have had them created by `rolesync migrate --create-aleph-schema`; they hold your data, so drop them yourself if you no longer need them.';
      return next;
    end if;

    -- The guard trigger, before its function.
    if exists (select from pg_catalog.pg_trigger t where t.tgrelid = v_rm and t.tgname = 'role_membership_guard' and not t.tgisinternal) then
      v_tx := v_tx || 'drop trigger role_membership_guard on public.role_membership'::text;
      v_tx_why := v_tx_why || 'rolesync''s guard: inserts take the member lock'::text;
    end if;
  end if;

  -- Grants: exactly those rolesync recorded as its own.
  if pg_catalog.to_regclass('rolesync.installation') is not null then
    execute 'select i.grants_recorded, i.app_role from rolesync.installation i' into v_recorded, v_app_role;
  end if;
  if pg_catalog.to_regclass('rolesync.granted') is not null then
    for v_obj in execute
      'select g.grantee, g.object, g.column_name, g.privilege, c.relkind
         from rolesync.granted g
         join pg_catalog.pg_class c on c.oid = pg_catalog.to_regclass(g.object)
        where pg_catalog.to_regrole(pg_catalog.quote_ident(g.grantee)) is not null
        order by g.object, g.column_name, g.grantee, g.privilege'
    loop
      v_tx := v_tx || pg_catalog.format('revoke %s%s on %s %s from %I', v_obj.privilege,
                                        case when v_obj.column_name <> '' then pg_catalog.format(' (%I)', v_obj.column_name) else '' end,
                                        case when v_obj.relkind = 'S' then 'sequence' else 'table' end,
                                        v_obj.object, v_obj.grantee);
      v_tx_why := v_tx_why || pg_catalog.format('rolesync granted it; %s held no such privilege before', v_obj.grantee);
    end loop;
  end if;
  -- Where rolesync granted before it recorded its grants (functions of its own are there to drop).
  if not coalesce(v_recorded, false) and v_rm is not null
     and (pg_catalog.to_regprocedure('public.sync_role_memberships(integer, integer[], text)') is not null
          or pg_catalog.to_regclass('rolesync.migrations') is not null) then
    v_n := v_n + 1; step := v_n; phase := 'keep'; statement := null;
    why := pg_catalog.format('privileges on Aleph''s objects granted to %s before rolesync recorded its grants (0.2.0): '
             'SELECT, INSERT on public.role, UPDATE (email, updated_at) on public.role, USAGE on public.role_id_seq, '
             'SELECT, INSERT, DELETE on public.role_membership. Aleph''s own code may need them, so they stay; '
             'revoke any the role should not have by hand.',
             coalesce(pg_catalog.quote_ident(v_app_role), 'the application role'));
    return next;
  end if;

  -- rolesync's objects in public, as its migrations name them.
  for v_obj in
    select p.oid::regprocedure::text as name
      from pg_catalog.pg_proc p
     where p.pronamespace = 'public'::regnamespace and p.proname = any (p_public_names)
     order by p.proname = 'role_membership_guard', 1
  loop
    v_tx := v_tx || pg_catalog.format('drop function %s', v_obj.name);
    v_tx_why := v_tx_why || 'rolesync''s function'::text;
  end loop;
  for v_obj in
    select c.oid::regclass::text as name, c.relkind, c.relname
      from pg_catalog.pg_class c
     where c.relnamespace = 'public'::regnamespace and c.relname = any (p_public_names)
       and c.relkind in ('r', 'v', 'm', 'S', 'p')
     order by c.relkind <> 'v', 1
  loop
    if v_obj.relname = 'role_membership_removed' then
      continue; -- the archive: below
    end if;
    v_tx := v_tx || pg_catalog.format('drop %s %s',
                                      case v_obj.relkind when 'v' then 'view' when 'm' then 'materialized view'
                                                         when 'S' then 'sequence' else 'table' end, v_obj.name);
    v_tx_why := v_tx_why || 'rolesync''s'::text;
  end loop;

  -- Schema rolesync: everything in it, the archive aside.
  if pg_catalog.to_regnamespace('rolesync') is not null then
    for v_obj in
      select p.oid::regprocedure::text as name
        from pg_catalog.pg_proc p where p.pronamespace = 'rolesync'::regnamespace order by 1
    loop
      v_tx := v_tx || pg_catalog.format('drop function %s', v_obj.name);
      v_tx_why := v_tx_why || 'rolesync''s function'::text;
    end loop;
    for v_obj in
      select c.oid::regclass::text as name, c.relkind
        from pg_catalog.pg_class c
       where c.relnamespace = 'rolesync'::regnamespace and c.relkind in ('v', 'm', 'r', 'p', 'f')
         and c.relname <> 'role_membership_removed'
       order by c.relkind not in ('v', 'm'), c.relname = 'migrations', 1
    loop
      v_tx := v_tx || pg_catalog.format('drop %s %s',
                                        case v_obj.relkind when 'v' then 'view' when 'm' then 'materialized view'
                                                           when 'f' then 'foreign table' else 'table' end, v_obj.name);
      v_tx_why := v_tx_why || case when v_obj.name = 'rolesync.migrations' then 'rolesync''s ledger'
                                   else 'rolesync''s' end;
    end loop;
    for v_obj in
      select c.oid::regclass::text as name
        from pg_catalog.pg_class c
       where c.relnamespace = 'rolesync'::regnamespace and c.relkind = 'S'
         and not exists (select from pg_catalog.pg_depend d
                          where d.classid = 'pg_catalog.pg_class'::regclass and d.objid = c.oid and d.deptype in ('a', 'i'))
       order by 1
    loop
      v_tx := v_tx || pg_catalog.format('drop sequence %s', v_obj.name);
      v_tx_why := v_tx_why || 'rolesync''s'::text;
    end loop;
    for v_obj in
      select t.oid::regtype::text as name
        from pg_catalog.pg_type t
       where t.typnamespace = 'rolesync'::regnamespace and t.typtype in ('c', 'e', 'd', 'r')
         and (t.typrelid = 0 or (select c.relkind from pg_catalog.pg_class c where c.oid = t.typrelid) = 'c')
       order by 1
    loop
      v_tx := v_tx || pg_catalog.format('drop type %s', v_obj.name);
      v_tx_why := v_tx_why || 'rolesync''s'::text;
    end loop;
  end if;

  -- rolesync's rows of graphile-migrate's ledger (0.1.0 kept its own there), and only those.
  if pg_catalog.to_regclass('graphile_migrate.migrations') is not null then
    execute 'select exists (select from graphile_migrate.migrations g
                             where exists (select from unnest($1, $2) as o(f, h) where o.f = g.filename and o.h = g.hash))'
       into v_gm_left using p_filenames, p_hashes;
    if v_gm_left then
      v_tx := v_tx || pg_catalog.format(
        'delete from graphile_migrate.migrations g where (g.filename, g.hash) in (select o.f, o.h from unnest(%L::text[], %L::text[]) as o(f, h))',
        p_filenames, p_hashes);
      v_tx_why := v_tx_why || 'rolesync 0.1.0''s ledger rows (their file names and hashes are rolesync''s); another application''s rows stay'::text;
    end if;
    -- Left with nothing but graphile-migrate's two tables, both empty once ours are gone: 0.1.0 made the schema.
    execute 'select (select pg_catalog.count(*) from pg_catalog.pg_class c
                      where c.relnamespace = ''graphile_migrate''::regnamespace and c.relkind in (''r'', ''p'', ''v'', ''m'', ''f'', ''S'')) = 2
               and pg_catalog.to_regclass(''graphile_migrate.current'') is not null
               and not exists (select from pg_catalog.pg_proc p where p.pronamespace = ''graphile_migrate''::regnamespace)
               and not exists (select from graphile_migrate.migrations g
                                where not exists (select from unnest($1, $2) as o(f, h) where o.f = g.filename and o.h = g.hash))'
       into v_gm_left using p_filenames, p_hashes;
    if v_gm_left then
      execute 'select not exists (select from graphile_migrate.current)' into v_gm_left;
    end if;
    if v_gm_left then
      v_tx := v_tx || 'drop table graphile_migrate.current, graphile_migrate.migrations'::text || 'drop schema graphile_migrate'::text;
      v_tx_why := v_tx_why || 'graphile-migrate''s ledger held only rolesync 0.1.0''s rows: no other application uses it'::text
                           || 'graphile-migrate''s schema, now empty'::text;
    end if;
  end if;

  -- The archive.
  v_keeps_schema := false;
  foreach v_archive in array array['rolesync.role_membership_removed', 'public.role_membership_removed'] loop
    if pg_catalog.to_regclass(v_archive) is null then
      continue;
    end if;
    execute pg_catalog.format('select pg_catalog.count(*) from %s', v_archive) into v_archive_rows;
    if p_drop_archive then
      v_tx := v_tx || pg_catalog.format('drop table %s', v_archive);
      v_tx_why := v_tx_why || pg_catalog.format('the archive of the rows the dedupe removed (%s rows): --drop-archive', v_archive_rows);
    else
      v_keeps_schema := v_keeps_schema or v_archive like 'rolesync.%';
      v_n := v_n + 1; step := v_n; phase := 'keep'; statement := null;
      why := pg_catalog.format('the archive %s (%s rows): the only record of the rows the dedupe removed, with why and when; '
                               'adopting again reuses it. --drop-archive drops it.', v_archive, v_archive_rows);
      return next;
    end if;
  end loop;
  if pg_catalog.to_regnamespace('rolesync') is not null then
    if v_keeps_schema then
      select pg_catalog.string_agg(pg_catalog.quote_ident(r.rolname), ', ' order by r.rolname) into v_grantees
        from pg_catalog.pg_namespace n
       cross join lateral pg_catalog.aclexplode(n.nspacl) a
        join pg_catalog.pg_roles r on r.oid = a.grantee
       where n.oid = 'rolesync'::regnamespace and a.grantee <> n.nspowner;
      if v_grantees is not null then
        v_tx := v_tx || pg_catalog.format('revoke all on schema rolesync from %s', v_grantees);
        v_tx_why := v_tx_why || 'rolesync granted these on its own schema; only the archive stays in it'::text;
      end if;
    else
      v_tx := v_tx || 'drop schema rolesync'::text;
      v_tx_why := v_tx_why || 'rolesync''s schema, now empty'::text;
    end if;
  end if;

  -- The transaction, role_membership locked first.
  if pg_catalog.cardinality(v_tx) > 0 then
    if v_rm is not null then
      v_n := v_n + 1; step := v_n; phase := 'transaction';
      statement := 'lock table public.role_membership in access exclusive mode';
      why := 'first, in the order a sync takes its locks (role_membership, then rolesync''s tables): logins wait at most lock_timeout (1 s)';
      return next;
    end if;
    for i in 1 .. pg_catalog.cardinality(v_tx) loop
      v_n := v_n + 1; step := v_n; phase := 'transaction'; statement := v_tx[i]; why := v_tx_why[i];
      return next;
    end loop;
  end if;

  -- The group index, without blocking writers.
  if pg_catalog.to_regclass('public.role_membership_group_id_member_id_idx') is not null then
    v_n := v_n + 1; step := v_n; phase := 'concurrent';
    statement := 'drop index concurrently if exists public.role_membership_group_id_member_id_idx';
    why := 'rolesync''s index for member listings and the guard''s lookup; dropped concurrently: writers go on';
    return next;
  end if;
end;
$$;
