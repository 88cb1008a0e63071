--! Previous: sha1:f4b3bf5d9f89605db4bfa569a85cf0c869fa7f98
--! Hash: sha1:fe921fe5d551a4f15a5ee69a43b9a430d7f268e2
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
