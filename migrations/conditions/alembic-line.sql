/*
 * Which line's Alembic chain this database follows, as rolesync.alembic_line()
 * (migration 000017) answers, for where that function may not exist yet:
 * `rolesync uninstall` of an install older than 000017, or of one rolled
 * back by hand. Sets the session setting rolesync.alembic_line to one of
 * none, aleph-before-4.1, aleph-4.1, openaleph, unknown.
 * test/alembic-line.test.ts keeps the two equal on every state.
 */
do $$
declare
  v_revisions text[];
  v_line text;
begin
  if pg_catalog.to_regclass('public.alembic_version') is null then
    v_line := 'none';
  else
    -- Dynamic: public.alembic_version may not exist when this block is compiled.
    execute 'select array(select v.version_num::text from public.alembic_version v)' into v_revisions;
    v_line := case
      when pg_catalog.cardinality(v_revisions) = 0 then 'none'
      when v_revisions && array['131674bde902', 'd46fc882ec6b', '31e24765dee3', '2c55cafd26ce']
           or exists (select from pg_catalog.pg_attribute a
                       where a.attrelid = pg_catalog.to_regclass('public.role') and a.attname = 'api_key_digest'
                         and not a.attisdropped) then 'aleph-4.1'
      when v_revisions && array['e003034f4af8', '5d52e680a2f3', '48e003f89633', '575ded9400fd'] then 'openaleph'
      when v_revisions <@ array['af9b37868cf3', '8a8ef1f7e6fa', '40d6ffcd8442', 'b3ff632002d9', '1519391870a0',
                                'b3959bf8cc66', '2b478162b2b7', '2979a1322381', 'a8849e4e6784', 'aac638b04072',
                                '23c4b0bf13bf', '8dff301e1b1f', '4c9e198c5b31', '9dcef7592cea', 'aa486b9e627e',
                                '18f53aae83ae', '5b681871c1ab', '274270e01613', 'c52a1f469ac7', '8adf50aadcb0']
        then 'aleph-before-4.1'
      else 'unknown' end;
  end if;
  perform pg_catalog.set_config('rolesync.alembic_line', v_line, false);
end
$$;
