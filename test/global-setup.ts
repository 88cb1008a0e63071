/*
 * Gives every test file the server and the migrated template. Under
 * `npm test` they come from scripts/test/test.ts through the environment; a bare
 * `npx vitest` makes its own with the same harness.
 */
import type { TestProject } from "vitest/node";
import { dropDatabase, startServer } from "../scripts/server/db.ts";
import { prepareTemplate } from "../scripts/test/harness.ts";

declare module "vitest" {
  export interface ProvidedContext {
    adminUrl: string;
    template: string;
    serverLabel: string;
  }
}

export default async function setup(project: TestProject) {
  const { ROLESYNC_TEST_ADMIN_URL, ROLESYNC_TEST_TEMPLATE, ROLESYNC_TEST_SERVER } = process.env;
  if (ROLESYNC_TEST_ADMIN_URL && ROLESYNC_TEST_TEMPLATE) {
    project.provide("adminUrl", ROLESYNC_TEST_ADMIN_URL);
    project.provide("template", ROLESYNC_TEST_TEMPLATE);
    project.provide("serverLabel", ROLESYNC_TEST_SERVER ?? "PostgreSQL");
    return;
  }
  const server = await startServer();
  const template = await prepareTemplate(server);
  project.provide("adminUrl", server.adminUrl);
  project.provide("template", template);
  project.provide("serverLabel", `PostgreSQL ${server.major} (${server.kind})`);
  return async () => {
    await dropDatabase(server, template).catch(() => {});
    await server.stop();
  };
}
