--! Previous: sha1:2531d77ce0ecb8005d442744d0d6fceaa1a4a44d
--! Hash: sha1:765737be44ae8aea3212ed9b032f6a0b841c75ff
--! Message: vacuum

--! no-transaction
/*
 * Fresh statistics and visibility map before the dedupe: its search for
 * duplicated pairs is then an index-only scan of the group index, and its
 * plan rests on real row counts (a table Aleph never analyzed looks empty).
 * VACUUM takes SHARE UPDATE EXCLUSIVE: reads and writes go on.
 */
vacuum (analyze) public.role_membership;
