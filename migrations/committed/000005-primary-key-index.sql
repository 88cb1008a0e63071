--! Previous: sha1:cfe9c9632cf5d96580bce5de1ebbc958d644eae6
--! Hash: sha1:f8e0ac0359992730db03757791a7b975a3e78b31
--! Message: primary key index

--! no-transaction
/*
 * The unique index behind the primary key, built without blocking writers.
 * Aleph 4.1+ already has role_membership_pkey, so IF NOT EXISTS skips it.
 */
create unique index concurrently if not exists role_membership_pkey
  on public.role_membership using btree (member_id, group_id);
