/*
 * One version everywhere: the npm package (and its lock file), `rolesync
 * --version`, the psql scripts' headers, the Python package's metadata and
 * its __version__, and a dated CHANGELOG section for it. (The wheel's file
 * name is checked by python/tests/client/test_wheel.py, which builds it.)
 */
import { expect, test } from "vitest";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { packageRoot } from "../src/migrate.ts";

const read = (file: string) => readFileSync(path.join(packageRoot, file), "utf8");
const version = JSON.parse(read("package.json")).version as string;
const cli = (...args: string[]) =>
  execFileSync(process.execPath, ["--import", "tsx", path.join(packageRoot, "src", "bin.ts"), ...args], { encoding: "utf8" });

test("the npm package's version is a release, and its lock file agrees", () => {
  expect(version).toMatch(/^\d+\.\d+\.\d+$/);
  const lock = JSON.parse(read("package-lock.json"));
  expect([lock.version, lock.packages[""].version]).toEqual([version, version]);
});

test("`rolesync --version` and both psql scripts' headers say it", () => {
  expect(cli("--version").trim()).toBe(version);
  expect(cli("sql").split("\n")[0]).toBe(`-- rolesync ${version}: every migration \`rolesync migrate\` applies, as one psql script.`);
  expect(cli("sql", "--uninstall").split("\n")[0]).toBe(`-- rolesync ${version}: \`rolesync uninstall\`, as one psql script.`);
});

test("the Python package says it too: pyproject.toml and rolesync.__version__", () => {
  expect(read("python/pyproject.toml")).toMatch(new RegExp(`^version = "${version.replace(/\./g, "\\.")}"$`, "m"));
  expect(read("python/src/rolesync/_version.py")).toMatch(new RegExp(`^__version__ = "${version.replace(/\./g, "\\.")}"$`, "m"));
});

test("CHANGELOG dates it, and its newest section is it", () => {
  const sections = [...read("CHANGELOG.md").matchAll(/^## (.+)$/gm)].map((m) => m[1]);
  const released = sections.filter((s) => s !== "Unreleased");
  expect(released[0]).toMatch(new RegExp(`^${version.replace(/\./g, "\\.")} - \\d{4}-\\d{2}-\\d{2}$`));
});
