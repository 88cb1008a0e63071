--! Previous: sha1:f4e604337f53fa88f1085205c121410fd49bf5eb
--! Hash: sha1:85165da6d6f09b5554405f30db278794b3c3ac7b
--! Message: vacuum

--! no-transaction
/*
 * Fresh statistics and visibility map before the dedupe: its search for
 * duplicated pairs is then an index-only scan of the group index, and its
 * plan rests on real row counts (a table Aleph never analyzed looks empty).
 * VACUUM takes SHARE UPDATE EXCLUSIVE: reads and writes go on.
 */
vacuum (analyze) public.role_membership;
