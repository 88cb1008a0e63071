--! Previous: sha1:a887818a4d3edc4dc98064528724dd1b33d4c8b7
--! Hash: sha1:4428ea438ebc73e18091becce9109c0653d66e9c
--! Message: primary key index

--! no-transaction
/*
 * The unique index behind the primary key, built without blocking writers.
 * Aleph 4.1+ already has role_membership_pkey, so IF NOT EXISTS skips it.
 */
create unique index concurrently if not exists role_membership_pkey
  on public.role_membership using btree (member_id, group_id);
