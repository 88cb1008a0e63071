/*
 * `prepare`: builds dist/ in a checkout, where npm runs it (`npm ci`,
 * `npm install <folder>`, an install from a git URL). A folder npm links
 * gets none of its dependencies installed, so where TypeScript cannot be
 * found and dist/ is not built, this stops with what to do instead.
 * A tarball ships dist/ built, and its package.json no `prepare` (see
 * pack-manifest.mjs).
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../..", import.meta.url));
let typescript = true;
try {
  createRequire(path.join(root, "package.json")).resolve("typescript/package.json");
} catch {
  typescript = false;
}
if (typescript) {
  const build = spawnSync("npm run --silent build", { cwd: root, stdio: "inherit", shell: true });
  process.exit(build.status ?? 1);
}
if (!existsSync(path.join(root, "dist", "index.js"))) {
  console.error(
    `rolesync: dist/ is not built and cannot be built here, because TypeScript is not installed in ${root}. ` +
      "npm installs no dependencies of a folder it links: run npm ci in that folder first, " +
      "or install rolesync from a tarball (npm pack) or a git URL.",
  );
  process.exit(1);
}
