--! Previous: sha1:5e7d8404a027c1bee55a546374f4d7b73f19267d
--! Hash: sha1:d076ac347e81b8bd07841a13f69dee9892e74f96
--! Message: primary key index
--! AllowInvalidHash

--! no-transaction
/*
 * PostgreSQL 10 and 11: the unique index for rolesync's own key, built
 * without blocking writers. Before 12, SET NOT NULL and a primary key on
 * existing columns scan the whole table under ACCESS EXCLUSIVE (12+ skips the
 * scan when a validated check proves it), so there rolesync keys the table
 * with a UNIQUE constraint on this index (000007) and keeps the validated
 * NOT NULL check: no scan under a strong lock. Where Aleph 4.1+ already has
 * role_membership_pkey, 000012 drops this index again.
 */
create unique index concurrently if not exists rolesync_role_membership_key
  on public.role_membership using btree (member_id, group_id);
