/*
 * Runs before pending migrations. Adopting again after `rolesync uninstall`
 * (or after the hand rollback docs/aleph.md showed until 0.2.0) replays the
 * chain from 000001, whose first migration creates the archive and the
 * version table in public when they are absent, and whose 000012 moves them
 * to schema rolesync. `uninstall` keeps the archive, rolesync's only record
 * of the rows its dedupe removed, in schema rolesync; 000012 then stopped
 * with 42P07 (role_membership_removed already exists in schema rolesync).
 * So, while 000012 is still to run, a table of ours found in schema rolesync
 * goes back to public, with its rows, identity sequence and indexes, for
 * 000001 to find and 000012 to move again. Released migrations stay as they
 * are.
 *
 * An operator who already met that 42P07 has both: the kept table in
 * rolesync and a new one 000001 made in public. Then public's rows are
 * appended to the kept table (new ids after the old ones; the kept rows keep
 * theirs), public's table goes, and the kept one moves. Nothing is lost.
 * A version table's rows merge by member, keeping the higher version.
 */
do $$
declare
  v_table text;
begin
  perform pg_catalog.set_config('lock_timeout', '1s', true);
  -- 000012 has run (and will not run again): nothing to do.
  if pg_catalog.to_regclass('rolesync.migrations') is not null then
    if exists (select from rolesync.migrations m where m.filename = '000012.sql') then
      return;
    end if;
  end if;
  foreach v_table in array array['role_membership_removed', 'role_membership_version'] loop
    if pg_catalog.to_regclass('rolesync.' || v_table) is null then
      continue;
    end if;
    if pg_catalog.to_regclass('public.' || v_table) is not null then
      if v_table = 'role_membership_removed' then
        insert into rolesync.role_membership_removed (group_id, member_id, reason, removed_at, removed_by)
        select p.group_id, p.member_id, p.reason, p.removed_at, p.removed_by
          from public.role_membership_removed p
         order by p.id;
      else
        insert into rolesync.role_membership_version as v (member_id, version, changed_at)
        select p.member_id, p.version, p.changed_at from public.role_membership_version p
        on conflict (member_id) do update
          set version = greatest(v.version, excluded.version),
              changed_at = greatest(v.changed_at, excluded.changed_at);
      end if;
      raise notice 'merged public.% into rolesync.%, kept from an earlier install', v_table, v_table;
      execute pg_catalog.format('drop table public.%I', v_table);
    end if;
    execute pg_catalog.format('alter table rolesync.%I set schema public', v_table);
    raise notice 'adopting again: rolesync.% goes back to public until 000012 moves it, with its rows', v_table;
  end loop;
end
$$;
