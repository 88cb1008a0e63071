--! Previous: sha1:bea3fe80cc93d1ff28264a88a2d078566d6c147c
--! Hash: sha1:95c68f9f2ee5f019b3d9135055599bfc49a6974f
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
