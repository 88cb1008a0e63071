--! Previous: sha1:adda91d49cf4ead1bfb7ae3b5db32f6253bce49e
--! Hash: sha1:7549fad45ef3945549e7cd881388d8e829aad704
--! Message: primary key index

--! no-transaction
/*
 * The unique index behind the primary key, built without blocking writers.
 * Aleph 4.1+ already has role_membership_pkey, so IF NOT EXISTS skips it.
 */
create unique index concurrently if not exists role_membership_pkey
  on public.role_membership using btree (member_id, group_id);
