--! Previous: sha1:10023ce9bdcec5340e8c4ca079eb9cb50751d5db
--! Hash: sha1:9eadd01bac06246df18a32ab3f636840d2a3102e
--! Message: primary key index

--! no-transaction
/*
 * The unique index behind the primary key, built without blocking writers.
 * Aleph 4.1+ already has role_membership_pkey, so IF NOT EXISTS skips it.
 */
create unique index concurrently if not exists role_membership_pkey
  on public.role_membership using btree (member_id, group_id);
