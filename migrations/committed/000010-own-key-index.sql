--! Previous: sha1:fe8da1ab84b7b8a4949a4d2fcd0a63c254c8edbc
--! Hash: sha1:5de566052b0ff402d579be60bfcb14c54fc22561
--! Message: own key index
--! RunIf: conditions/aleph-adds-primary-key.sql

--! no-transaction
/*
 * The unique index for rolesync's own key on (member_id, group_id), built
 * without blocking writers. Aleph's revision 131674bde902 (4.1) adds
 * role_membership_pkey itself and fails on a table that already has a
 * primary key; so where Aleph has yet to run it, 000011 turns this index into
 * a UNIQUE constraint under rolesync's name and leaves the primary key's name
 * to Aleph. A no-transaction migration holds one statement, so the build
 * cannot be made conditional: it runs everywhere, and 000011 drops the index
 * at once where the primary key is there to stay.
 */
create unique index concurrently if not exists rolesync_role_membership_key
  on public.role_membership using btree (member_id, group_id);
