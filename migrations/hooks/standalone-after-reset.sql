/*
 * Runs after graphile-migrate's reset has created a database from nothing
 * (`npm run db:reset`, and the shadow database that db:commit and
 * db:uncommit rebuild). Such a database is standalone by definition, so it
 * opts in to Aleph's tables (see aleph-tables.sql): for this session, which
 * the migration after the reset may reuse, and for later connections.
 */
do $$
begin
  perform pg_catalog.set_config('rolesync.create_aleph_schema', 'on', false);
  execute format('alter database %I set rolesync.create_aleph_schema = on', pg_catalog.current_database());
end
$$;
