--! Previous: sha1:0dfaae86e3443ee21e981e92eb75f9dfb680ea05
--! Hash: sha1:b4b75c88dbd2e22f776c6a02b1528bbbf79b93e2
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
