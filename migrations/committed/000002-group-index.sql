--! Previous: sha1:508e7f6ee0047e72a81654eaca998c387e65ee86
--! Hash: sha1:41e78fa07516769ee54f871da725cc6055c03655
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
