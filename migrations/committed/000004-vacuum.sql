--! Previous: sha1:18c6e51ac0e4fcb975d0939eb191463961437590
--! Hash: sha1:6ab1ab0f1d015d9d9f5b15e872fe3add6adb4dee
--! Message: vacuum

--! no-transaction
/*
 * Fresh statistics and visibility map before the dedupe: its search for
 * duplicated pairs is then an index-only scan of the group index, and its
 * plan rests on real row counts (a table Aleph never analyzed looks empty).
 * VACUUM takes SHARE UPDATE EXCLUSIVE: reads and writes go on.
 */
vacuum (analyze) public.role_membership;
