--! Previous: sha1:10c9b71aeb10cee03b4ac819fe5aa5192930a684
--! Hash: sha1:ebc8fd13e607fc8514774109e0623a7cfb1b1301
--! Message: primary key index

--! no-transaction
/*
 * The unique index behind the primary key, built without blocking writers.
 * Aleph 4.1+ already has role_membership_pkey, so IF NOT EXISTS skips it.
 */
create unique index concurrently if not exists role_membership_pkey
  on public.role_membership using btree (member_id, group_id);
