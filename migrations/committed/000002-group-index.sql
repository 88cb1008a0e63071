--! Previous: sha1:2b394cc176da08fa0bc82d00bafc3f80d28ff633
--! Hash: sha1:5ccdab5d7a3c327dc5099ab3db75a3840b714e63
--! Message: group index

--! no-transaction
/*
 * The index for member listings (leading with group_id), built without
 * blocking writers. It comes before the guard trigger because the guard's
 * duplicate check uses it; it is not unique, so existing duplicates do not
 * stop it. An interrupted build leaves an INVALID index, which the
 * beforeAllMigrations hook drops before this runs again.
 */
create index concurrently if not exists role_membership_group_id_member_id_idx
  on public.role_membership using btree (group_id, member_id);
