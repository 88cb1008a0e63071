--! Previous: sha1:53aa79737da2608775eb4eaa6dce2abe6d3475dd
--! Hash: sha1:68ff8bc3888d7b0f27d9aedb8ed1b590eb07546e
--! Message: primary key index

--! no-transaction
/*
 * The unique index behind the primary key, built without blocking writers.
 * Aleph 4.1+ already has role_membership_pkey, so IF NOT EXISTS skips it.
 */
create unique index concurrently if not exists role_membership_pkey
  on public.role_membership using btree (member_id, group_id);
