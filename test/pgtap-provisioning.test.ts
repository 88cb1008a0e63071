/*
 * pgTAP provisioning works on a machine without the Debian packages: the
 * distribution's files are fetched with `apt-get download` into a cache and
 * loaded as plain SQL, and pg_prove runs from the same cache. And pg_prove's
 * silent NOTESTS (no --ext .sql) is never taken for a pass.
 */
import { afterAll, beforeAll, expect, test } from "vitest";
import { installPgTap, runPgProve } from "../scripts/test/pgtap.ts";
import { createTestDatabase, withPgClient, type TestDatabase } from "./helpers.ts";

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase({ empty: true });
});
afterAll(async () => db?.drop());

test("pgTAP from the downloaded Debian package loads into any server, and the cached pg_prove runs it", async () => {
  const source = await withPgClient(db.url, (c) => installPgTap(c, () => {}, { forceDownload: true }));
  expect(source).toBe("downloaded-sql");
  const run = await runPgProve(db.url, "test/fixtures/pgtap-smoke", { forceDownload: true });
  expect(run).toMatchObject({ files: 1, tests: 1 });
});

test("pg_prove without --ext .sql finds nothing and exits 0; the harness refuses that as a pass", async () => {
  await expect(runPgProve(db.url, "test/fixtures/pgtap-smoke", { ext: null })).rejects.toThrow(
    /ran no pgTAP tests/,
  );
});
