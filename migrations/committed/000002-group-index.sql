--! Previous: sha1:717e76975d9ec75be858f9e2f3cf99c369bbd621
--! Hash: sha1:c43bb22fb421787ced09bc7d8e7954f8dd881237
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
