--! Previous: sha1:5e7d8404a027c1bee55a546374f4d7b73f19267d
--! Hash: sha1:d076ac347e81b8bd07841a13f69dee9892e74f96
--! Message: primary key index
--! RunIf: conditions/no-key-yet.sql

--! no-transaction
/*
 * The unique index behind the primary key, built without blocking writers.
 * Aleph 4.1+ already has role_membership_pkey, so IF NOT EXISTS skips it.
 */
create unique index concurrently if not exists role_membership_pkey
  on public.role_membership using btree (member_id, group_id);
