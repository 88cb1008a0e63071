/*
 * The package.json that `npm pack` ships, without the `prepare` script.
 *
 * `prepare` builds dist/ in a checkout (`npm ci`, `npm install <folder>`, a
 * git URL). A tarball ships dist/ already built, yet npm 11 lists every
 * install-time script of a dependency, `prepare` included, in a warning that
 * prints the whole script on each install of it. So `prepack` strips it
 * from package.json after the build, and `postpack` puts the file back byte
 * for byte, as pinst does for husky's postinstall.
 *
 *   node scripts/tools/pack-manifest.mjs strip     (prepack)
 *   node scripts/tools/pack-manifest.mjs restore   (postpack)
 *
 * The original waits in node_modules/.cache/rolesync/package.json.prepack;
 * a `strip` that finds it there (a pack that died between the two) restores
 * it first, so package.json is never stripped twice or lost.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../..", import.meta.url));
const manifest = path.join(root, "package.json");
const saved = path.join(root, "node_modules", ".cache", "rolesync", "package.json.prepack");

function restore() {
  if (!existsSync(saved)) return false;
  writeFileSync(manifest, readFileSync(saved));
  rmSync(saved);
  return true;
}

const mode = process.argv[2];
if (mode === "strip") {
  restore();
  const original = readFileSync(manifest, "utf8");
  const pkg = JSON.parse(original);
  if (pkg.scripts?.prepare === undefined) process.exit(0);
  mkdirSync(path.dirname(saved), { recursive: true });
  writeFileSync(`${saved}.tmp`, original);
  renameSync(`${saved}.tmp`, saved);
  delete pkg.scripts.prepare;
  writeFileSync(manifest, `${JSON.stringify(pkg, null, 2)}\n`);
} else if (mode === "restore") {
  restore();
} else {
  console.error("usage: node scripts/tools/pack-manifest.mjs strip|restore");
  process.exit(2);
}
