--! Previous: sha1:dd6b06068750e88575dddd31c6b0ca71cd21e660
--! Hash: sha1:4c2d905bfba29890cd58a8df574c80ecc46fcd9f
--! Message: vacuum

--! no-transaction
/*
 * Fresh statistics and visibility map before the dedupe: its search for
 * duplicated pairs is then an index-only scan of the group index, and its
 * plan rests on real row counts (a table Aleph never analyzed looks empty).
 * VACUUM takes SHARE UPDATE EXCLUSIVE: reads and writes go on.
 */
vacuum (analyze) public.role_membership;
