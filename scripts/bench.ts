/*
 * `npm run bench`: sync_role_memberships against the physical limit and
 * against the legacy path, measured side by side with pgbench, and the
 * migration of a dirty 5,000,000-row table against a plain index build.
 * Writes docs/benchmarks.md and docs/benchmarks.svg.
 *
 * These machines are shared and noisy: absolute numbers are context, ratios
 * are the result. Each comparison alternates its variants (A B C A B C ...)
 * within one process and reports medians.
 *
 *   npm run bench                 # full size, about 8 minutes on 2 cores
 *   npm run bench -- --toy        # tiny sizes, seconds (what the test runs)
 *   npm run bench -- --out DIR    # write the report elsewhere
 */
import { $ } from "zx";
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { createDatabase, dropDatabase, startServerOrExit, uniqueName, withClient, type Server } from "./db.ts";
import { pgEnv } from "./pgtap.ts";
import { ALEPH_SCHEMA } from "../test/fixtures.ts";
import { packageRoot, runMigrations } from "../src/migrate.ts";

$.verbose = false;
const args = process.argv.slice(2);
const toy = args.includes("--toy");
const outDir = args.includes("--out") ? path.resolve(args[args.indexOf("--out") + 1]) : path.join(packageRoot, "docs");

const SIZE = toy
  ? { users: 2_000, groups: 100, seconds: 1, rounds: 2, slice: 50, bloatLogins: 2_000, bigUsers: 10_000, contentionSeconds: 1 }
  : { users: 100_000, groups: 1_000, seconds: 5, rounds: 3, slice: 1_000, bloatLogins: 100_000, bigUsers: 1_000_000, contentionSeconds: 10 };
const GROUPS_PER_USER = 5;
const log = (s: string) => console.log(`[bench] ${s}`);
const workDir = mkdtempSync(path.join(os.tmpdir(), "rolesync-bench-"));
const commands: string[] = [];

/* ------------------------------------------------------------------ pgbench */

interface Run {
  tps: number;
  transactions: number;
  failed: number;
  walBytes: number;
  rowWrites: number;
  latenciesMs?: number[];
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

/** WAL position and row writes to our tables, read around a run. */
async function counters(url: string): Promise<{ lsn: string; writes: number }> {
  return withClient(url, async (c) => {
    const { rows } = await c.query<{ lsn: string; writes: string }>(
      `select pg_current_wal_insert_lsn()::text as lsn,
              coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) as writes
         from pg_stat_user_tables
        where (schemaname, relname) in (('public', 'role'), ('public', 'role_membership'), ('rolesync', 'role_membership_version'))`,
    );
    return { lsn: rows[0].lsn, writes: Number(rows[0].writes) };
  });
}

async function walBetween(url: string, from: string, to: string): Promise<number> {
  return withClient(url, async (c) => Number((await c.query("select pg_wal_lsn_diff($2, $1) as d", [from, to])).rows[0].d));
}

async function pgbench(
  url: string,
  name: string,
  script: string,
  opts: { clients: number; seconds?: number; transactionsPerClient?: number; defines?: Record<string, number>; latencies?: boolean },
): Promise<Run> {
  const file = path.join(workDir, `${name}.sql`);
  writeFileSync(file, script);
  const logPrefix = path.join(workDir, `log-${name}-${Date.now()}`);
  const argv = [
    "-n", "-M", "prepared", "-c", String(opts.clients), "-j", String(opts.clients),
    ...(opts.seconds ? ["-T", String(opts.seconds)] : ["-t", String(opts.transactionsPerClient)]),
    ...Object.entries(opts.defines ?? {}).flatMap(([k, v]) => ["-D", `${k}=${v}`]),
    ...(opts.latencies ? ["--log", `--log-prefix=${logPrefix}`] : []),
    "-f", file,
  ];
  const line = `pgbench ${argv.map((a) => (a === file ? `${name}.sql` : a.startsWith("--log-prefix") ? "--log-prefix=…" : a)).join(" ")}`;
  if (!commands.includes(line)) commands.push(line);
  const before = await counters(url);
  const out = await $({ env: { ...process.env, ...pgEnv(url) }, nothrow: true })`pgbench ${argv}`;
  const after = await counters(url);
  if (out.exitCode !== 0 || /aborted/.test(out.stdout + out.stderr)) {
    throw new Error(`pgbench ${name} failed (exit ${out.exitCode}):\n${out.stdout}\n${out.stderr}`);
  }
  const tps = Number(/tps = ([\d.]+) \(without initial connection time\)/.exec(out.stdout)?.[1]);
  const transactions = Number(/number of transactions actually processed: (\d+)/.exec(out.stdout)?.[1]);
  const failed = Number(/number of failed transactions: (\d+)/.exec(out.stdout)?.[1] ?? 0);
  let latenciesMs: number[] | undefined;
  if (opts.latencies) {
    latenciesMs = [];
    for (const f of readdirSync(workDir).filter((f) => f.startsWith(path.basename(logPrefix)))) {
      for (const l of readFileSync(path.join(workDir, f), "utf8").split("\n")) {
        const cols = l.split(" ");
        if (cols.length >= 3) latenciesMs.push(Number(cols[2]) / 1000);
      }
      rmSync(path.join(workDir, f));
    }
    latenciesMs.sort((a, b) => a - b);
  }
  return {
    tps,
    transactions,
    failed,
    walBytes: (await walBetween(url, before.lsn, after.lsn)) / transactions,
    rowWrites: (after.writes - before.writes) / transactions,
    latenciesMs,
  };
}

/* ---------------------------------------------------------------- scripts */

// Group k of user u: state A uses k = 0..4; state B swaps k = 4 for k = 5.
const groupOf = (k: string) => `1 + (:uid * 7 + ${k} * 131) % :groups`;
const setGroups = (k4: string) =>
  [0, 1, 2, 3].map((k) => `\\set g${k} ${groupOf(String(k))}`).join("\n") + `\n\\set g4 ${groupOf(k4)}\n`;
const randomUser = `\\set uid random(:first_user, :last_user)\n`;
// Changed logins: each client walks its own slice of users twice, flipping each between A and B.
const walkSlice = `\\set n :n + 1
\\set uid :first_user + :client_id * :slice + mod(:n - 1, :slice)
\\set pass (:n - 1) / :slice
\\set k4 5 - mod(:pass, 2)
\\set old_k4 4 + mod(:pass, 2)
\\set old_g ${groupOf(":old_k4")}
`;

const SQL = {
  limit: "select group_id from role_membership where member_id = :uid;\n",
  sync: "select added, removed from sync_role_memberships(:uid, array[:g0, :g1, :g2, :g3, :g4]::int[]);\n",
  legacy:
    "begin;\ndelete from role_membership where member_id = :uid;\n" +
    "insert into role_membership (group_id, member_id) values (:g0, :uid), (:g1, :uid), (:g2, :uid), (:g3, :uid), (:g4, :uid);\ncommit;\n",
  diffNoop: "begin;\nselect group_id from role_membership where member_id = :uid;\ncommit;\n",
  diffChange:
    "begin;\nselect group_id from role_membership where member_id = :uid;\n" +
    "delete from role_membership where member_id = :uid and group_id = :old_g;\n" +
    "insert into role_membership (group_id, member_id) values (:g4, :uid);\ncommit;\n",
};

/* ---------------------------------------------------------------- dataset */

async function loadDataset(url: string, users: number, groups: number) {
  await withClient(url, async (c) => {
    await c.query(
      `insert into role (foreign_id, name, type, is_admin, is_muted, is_blocked, is_tester)
       select 'group:g' || g, 'g' || g, 'group', false, false, false, false from generate_series(1, $1) g`,
      [groups],
    );
    await c.query(
      `insert into role (foreign_id, name, type, is_admin, is_muted, is_blocked, is_tester)
       select 'oidc:u' || u, 'u' || u, 'user', false, false, false, false from generate_series(1, $1) u`,
      [users],
    );
    // Bulk load: the guard's per-row member lock is for concurrent writers, not for this.
    await c.query("alter table role_membership disable trigger role_membership_guard");
    await c.query(
      `insert into role_membership (group_id, member_id)
       select 1 + (u * 7 + k * 131) % $2, u from generate_series($2 + 1, $2 + $1) u, generate_series(0, 4) k`,
      [users, groups],
    );
    await c.query("alter table role_membership enable trigger role_membership_guard");
    await c.query("vacuum analyze");
    await c.query("checkpoint");
  });
}

/* ------------------------------------------------------------------ cases */

interface Compared {
  clients: number;
  runs: Record<string, Run[]>;
}

async function alternate(
  url: string,
  label: string,
  variants: Record<string, string>,
  opts: { clients: number; seconds?: number; transactionsPerClient?: number; defines: Record<string, number> },
): Promise<Compared> {
  const runs: Record<string, Run[]> = Object.fromEntries(Object.keys(variants).map((v) => [v, []]));
  for (let round = 1; round <= SIZE.rounds; round++) {
    for (const [variant, script] of Object.entries(variants)) {
      const run = await pgbench(url, `${label}-${variant}`, script, opts);
      if (run.failed) throw new Error(`${label}/${variant}: ${run.failed} failed transactions`);
      runs[variant].push(run);
      log(`${label} round ${round} ${variant}: ${run.tps.toFixed(0)} tps, ${run.walBytes.toFixed(1)} WAL B/call, ${run.rowWrites.toFixed(2)} row writes/call`);
    }
  }
  return { clients: opts.clients, runs };
}

const tpsOf = (c: Compared, v: string) => median(c.runs[v].map((r) => r.tps));
const walOf = (c: Compared, v: string) => median(c.runs[v].map((r) => r.walBytes));
const writesOf = (c: Compared, v: string) => median(c.runs[v].map((r) => r.rowWrites));

async function bloat(server: Server, template: string) {
  const result: Record<string, Record<string, number>> = {};
  for (const [variant, script] of [["legacy", SQL.legacy], ["sync", SQL.sync]] as const) {
    const name = uniqueName("rolesync_bench_bloat");
    const url = await createDatabase(server, name, template);
    try {
      await withClient(url, (c) => c.query("alter table role_membership set (autovacuum_enabled = off)"));
      const clients = 4;
      const run = await pgbench(url, `bloat-${variant}`, randomUser + setGroups("4") + script, {
        clients,
        transactionsPerClient: Math.ceil(SIZE.bloatLogins / clients),
        defines: { first_user: SIZE.groups + 1, last_user: SIZE.groups + SIZE.users, groups: SIZE.groups },
      });
      result[variant] = await withClient(url, async (c) => {
        await c.query("select pg_stat_force_next_flush()").catch(() => {});
        const { rows } = await c.query(
          `select pg_relation_size('role_membership') as heap,
                  pg_relation_size('role_membership_pkey') as pkey,
                  pg_relation_size('role_membership_group_id_member_id_idx') as group_idx,
                  (select n_dead_tup from pg_stat_user_tables where relname = 'role_membership') as dead,
                  (select n_live_tup from pg_stat_user_tables where relname = 'role_membership') as live`,
        );
        return {
          logins: run.transactions,
          tps: run.tps,
          walBytesPerLogin: run.walBytes,
          rowWritesPerLogin: run.rowWrites,
          ...Object.fromEntries(Object.entries(rows[0]).map(([k, v]) => [k, Number(v)])),
        };
      });
      log(`bloat ${variant}: ${JSON.stringify(result[variant])}`);
    } finally {
      await dropDatabase(server, name);
    }
  }
  return result;
}

async function migration(server: Server) {
  const rows = SIZE.bigUsers * GROUPS_PER_USER;
  const clean = uniqueName("rolesync_bench_clean");
  const cleanUrl = await createDatabase(server, clean);
  const result = { rows, duplicates: 0, nullRows: 0, indexSeconds: [] as number[], migrationSeconds: [] as number[], steps: [] as { name: string; seconds: number }[], writerWaitsMs: [] as number[] };
  try {
    log(`loading a legacy table with ${rows.toLocaleString("en")} memberships`);
    await withClient(cleanUrl, async (c) => {
      // Aleph's pre-4.1 shape; its foreign keys are dropped for the bulk load and put back, as a restore does.
      await c.query(ALEPH_SCHEMA);
      await c.query(`alter table public.role_membership
                       drop constraint role_membership_group_id_fkey, drop constraint role_membership_member_id_fkey`);
      await c.query(
        `insert into public.role (foreign_id, name, type, is_admin, is_muted, is_blocked, is_tester)
         select 'group:g' || g, 'g' || g, 'group', false, false, false, false from generate_series(1, 1000) g`,
      );
      await c.query(
        `insert into public.role (foreign_id, name, type, is_admin, is_muted, is_blocked, is_tester)
         select 'oidc:u' || u, 'u' || u, 'user', false, false, false, false from generate_series(1, $1) u`,
        [SIZE.bigUsers],
      );
      await c.query(
        `insert into public.role_membership (group_id, member_id)
         select 1 + (u * 7 + k * 131) % 1000, 1000 + u from generate_series(1, $1) u, generate_series(0, 4) k`,
        [SIZE.bigUsers],
      );
      await c.query(`alter table public.role_membership
                       add constraint role_membership_group_id_fkey foreign key (group_id) references public.role (id),
                       add constraint role_membership_member_id_fkey foreign key (member_id) references public.role (id)`);
      await c.query("vacuum analyze");
      await c.query("checkpoint");
    });
    for (let round = 1; round <= 2; round++) {
      // A: a plain unique index build on the clean rows.
      const a = uniqueName("rolesync_bench_index");
      const aUrl = await createDatabase(server, a, clean);
      try {
        const t0 = performance.now();
        await withClient(aUrl, (c) => c.query("create unique index on public.role_membership (member_id, group_id)"));
        result.indexSeconds.push((performance.now() - t0) / 1000);
      } finally {
        await dropDatabase(server, a);
      }
      // B: the migration on the same rows made dirty: 1% duplicated, plus NULL rows, with a writer running.
      const b = uniqueName("rolesync_bench_migrate");
      const bUrl = await createDatabase(server, b, clean);
      try {
        await withClient(bUrl, async (c) => {
          const dup = await c.query(
            "insert into public.role_membership select group_id, member_id from public.role_membership where member_id % 100 = 0",
          );
          const nul = await c.query(
            `insert into public.role_membership
             select null, 1000 + g from generate_series(1, 500) g union all select g, null from generate_series(1, 500) g`,
          );
          result.duplicates = dup.rowCount ?? 0;
          result.nullRows = nul.rowCount ?? 0;
          await c.query("checkpoint");
        });
        let writing = true;
        const writer = (async () => {
          const c = new pg.Client({ connectionString: bUrl });
          await c.connect();
          const member = 1000 + SIZE.bigUsers; // a real user: the FK holds
          for (let i = 0; writing; i++) {
            const t = performance.now();
            await c.query("begin");
            await c.query("insert into public.role_membership (group_id, member_id) values ($1, $2)", [1 + (i % 1000), member]);
            await c.query("commit");
            result.writerWaitsMs.push(performance.now() - t);
            await new Promise((r) => setTimeout(r, 20));
          }
          await c.end();
        })();
        const t0 = performance.now();
        const migrated = await runMigrations({ databaseUrl: bUrl });
        result.migrationSeconds.push((performance.now() - t0) / 1000);
        result.steps = migrated.steps;
        writing = false;
        await writer;
      } finally {
        await dropDatabase(server, b);
      }
      log(`migration round ${round}: index ${result.indexSeconds.at(-1)!.toFixed(1)} s, migration ${result.migrationSeconds.at(-1)!.toFixed(1)} s`);
    }
  } finally {
    await dropDatabase(server, clean);
  }
  result.writerWaitsMs.sort((x, y) => x - y);
  return result;
}

/* ----------------------------------------------------------------- report */

function chart(noop: Compared[]): string {
  // One picture: no-op logins per second, relative to the limit (a bare SELECT), at 2 and 8 clients.
  const variants = [
    ["limit", "limit: SELECT", "#9e9e9e"],
    ["sync", "sync_role_memberships", "#2e7d32"],
    ["diff", "diff in the client", "#1565c0"],
    ["legacy", "legacy delete + insert", "#c62828"],
  ] as const;
  const W = 720, H = 360, left = 60, top = 50, bottom = 60, barW = 44, gap = 10, groupGap = 90;
  const plotH = H - top - bottom;
  const max = 1.2;
  const y = (v: number) => top + plotH - (Math.min(v, max) / max) * plotH;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`);
  parts.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">No-op login throughput, relative to a bare SELECT of the member's rows</text>`);
  for (const t of [0, 0.25, 0.5, 0.75, 1]) {
    parts.push(`<line x1="${left}" x2="${W - 20}" y1="${y(t)}" y2="${y(t)}" stroke="#ddd"/>`);
    parts.push(`<text x="${left - 8}" y="${y(t) + 4}" text-anchor="end">${t.toFixed(2)}×</text>`);
  }
  parts.push(`<line x1="${left}" x2="${W - 20}" y1="${y(0.7)}" y2="${y(0.7)}" stroke="#2e7d32" stroke-dasharray="5,4"/>`);
  parts.push(`<text x="${W - 22}" y="${y(0.7) - 4}" text-anchor="end" fill="#2e7d32">target for sync: 0.7×</text>`);
  noop.forEach((c, gi) => {
    const x0 = left + 30 + gi * (variants.length * (barW + gap) + groupGap);
    const limit = tpsOf(c, "limit");
    variants.forEach(([v, , color], vi) => {
      const ratio = tpsOf(c, v) / limit;
      const x = x0 + vi * (barW + gap);
      parts.push(`<rect x="${x}" y="${y(ratio)}" width="${barW}" height="${y(0) - y(ratio)}" fill="${color}"/>`);
      parts.push(`<text x="${x + barW / 2}" y="${y(ratio) - 5}" text-anchor="middle">${ratio.toFixed(2)}</text>`);
    });
    parts.push(`<text x="${x0 + (variants.length * (barW + gap)) / 2 - gap / 2}" y="${H - bottom + 20}" text-anchor="middle" font-weight="bold">${c.clients} clients</text>`);
  });
  variants.forEach(([, name, color], vi) => {
    const x = left + 10 + vi * 165;
    parts.push(`<rect x="${x}" y="${H - 24}" width="12" height="12" fill="${color}"/><text x="${x + 18}" y="${H - 14}">${name}</text>`);
  });
  parts.push("</svg>");
  return parts.join("\n") + "\n";
}

/* ------------------------------------------------------------------- main */

if ((await $({ nothrow: true })`sh -c ${"command -v pgbench"}`).exitCode !== 0) {
  console.error("[bench] pgbench is not installed.\nhint: on Debian it comes with the server package: apt-get install postgresql-15");
  process.exit(2);
}
const started = Date.now();
const server = await startServerOrExit({ durable: true, log, name: "[bench]" });
const base = uniqueName("rolesync_bench");
let exitCode = 0;
try {
  const url = await createDatabase(server, base);
  await runMigrations({ databaseUrl: url, createAlephSchema: true });
  log(`loading ${SIZE.users.toLocaleString("en")} users, ${SIZE.groups} groups, ${GROUPS_PER_USER} groups per user`);
  await loadDataset(url, SIZE.users, SIZE.groups);
  const fresh = await withClient(url, async (c) => {
    const { rows } = await c.query(
      `select pg_relation_size('role_membership') as heap, pg_relation_size('role_membership_pkey') as pkey,
              pg_relation_size('role_membership_group_id_member_id_idx') as group_idx,
              (select count(*) from role_membership) as rows`,
    );
    return Object.fromEntries(Object.entries(rows[0]).map(([k, v]) => [k, Number(v)])) as Record<string, number>;
  });
  const settings = await withClient(url, async (c) => {
    const { rows } = await c.query(
      `select name, setting, unit from pg_settings
        where name in ('server_version', 'shared_buffers', 'synchronous_commit', 'fsync', 'full_page_writes',
                       'wal_level', 'max_parallel_maintenance_workers', 'maintenance_work_mem', 'work_mem')
        order by name`,
    );
    return rows.map((r) => `${r.name} = ${r.setting}${r.unit ? " " + r.unit : ""}`);
  });
  const defines = { first_user: SIZE.groups + 1, last_user: SIZE.groups + SIZE.users, groups: SIZE.groups };

  // 1. No-op logins.
  const noop: Compared[] = [];
  for (const clients of [2, 8]) {
    noop.push(
      await alternate(url, `noop-c${clients}`, {
        limit: randomUser + SQL.limit,
        sync: randomUser + setGroups("4") + SQL.sync,
        diff: randomUser + SQL.diffNoop,
        legacy: randomUser + setGroups("4") + SQL.legacy,
      }, { clients, seconds: SIZE.seconds, defines }),
    );
  }
  // 2. Changed logins: one group added, one removed, every call.
  const changed = await alternate(url, "changed-c2", {
    diff: walkSlice + setGroups(":k4") + SQL.diffChange,
    sync: walkSlice + setGroups(":k4") + SQL.sync,
    legacy: walkSlice + setGroups(":k4") + SQL.legacy,
  }, { clients: 2, transactionsPerClient: 2 * SIZE.slice, defines: { ...defines, n: 0, slice: SIZE.slice } });
  // 3. Contention: 8 clients on one member, half the calls changing a group.
  const contention: Record<string, Run> = {};
  for (const [variant, script] of [["sync", SQL.sync], ["legacy", SQL.legacy]] as const) {
    contention[variant] = await pgbench(url, `contention-${variant}`,
      `\\set uid :first_user\n\\set k4 4 + random(0, 1)\n` + setGroups(":k4") + script,
      { clients: 8, seconds: SIZE.contentionSeconds, defines, latencies: true });
    log(`contention ${variant}: ${contention[variant].tps.toFixed(0)} tps, failed ${contention[variant].failed}`);
  }
  // Put the contended member back in state A, so that later no-op runs are no-ops for it too.
  await withClient(url, (c) =>
    c.query("select sync_role_memberships($1, array(select 1 + ($1 * 7 + k * 131) % $2 from generate_series(0, 4) k))", [
      defines.first_user,
      SIZE.groups,
    ]),
  );
  // 4. Bloat after many no-op logins.
  const bloated = await bloat(server, base);
  // 5. The migration of a dirty table.
  const mig = await migration(server);

  /* Write the report. */
  const r2 = noop[0], r8 = noop[1];
  const ratio = (c: Compared, a: string, b: string) => tpsOf(c, a) / tpsOf(c, b);
  const mark = (ok: boolean) => (ok ? "met" : "**missed**");
  const migRatio = median(mig.migrationSeconds) / median(mig.indexSeconds);
  const w = mig.writerWaitsMs;
  const tableNoop = (c: Compared) =>
    ["limit", "sync", "diff", "legacy"]
      .map((v) => `| ${v} | ${tpsOf(c, v).toFixed(0)} | ${(tpsOf(c, v) / tpsOf(c, "limit")).toFixed(2)}× | ${walOf(c, v).toFixed(1)} | ${writesOf(c, v).toFixed(2)} |`)
      .join("\n");
  const md = `# Benchmarks

Generated by \`npm run bench\`${toy ? " **at toy size (not the published numbers)**" : ""} on ${new Date().toISOString().slice(0, 10)}, in ${((Date.now() - started) / 1000 / 60).toFixed(1)} minutes. Absolute numbers depend on a shared, noisy machine; the **ratios**, measured in one run with the variants alternated (${SIZE.rounds} rounds, medians), are the result.

![No-op login throughput relative to the limit](benchmarks.svg)

## Targets

| Target | Measured | |
| --- | --- | --- |
| No-op sync ≥ 0.7× the limit's throughput (2 clients) | ${ratio(r2, "sync", "limit").toFixed(2)}× | ${mark(ratio(r2, "sync", "limit") >= 0.7)} |
| No-op sync ≥ 0.7× the limit's throughput (8 clients) | ${ratio(r8, "sync", "limit").toFixed(2)}× | ${mark(ratio(r8, "sync", "limit") >= 0.7)} |
| No-op sync ≥ 6× the legacy path (2 clients) | ${ratio(r2, "sync", "legacy").toFixed(1)}× | ${mark(ratio(r2, "sync", "legacy") >= 6)} |
| No-op sync ≥ 6× the legacy path (8 clients) | ${ratio(r8, "sync", "legacy").toFixed(1)}× | ${mark(ratio(r8, "sync", "legacy") >= 6)} |
| No-op sync writes zero WAL bytes per call | ${walOf(r2, "sync").toFixed(2)} / ${walOf(r8, "sync").toFixed(2)} B (2 / 8 clients) | ${mark(walOf(r2, "sync") < 1 && walOf(r8, "sync") < 1)} |
| No-op sync writes zero rows per call | ${writesOf(r2, "sync").toFixed(3)} / ${writesOf(r8, "sync").toFixed(3)} | ${mark(writesOf(r2, "sync") === 0 && writesOf(r8, "sync") === 0)} |
| Changed login: sync at least as fast as the client-side diff | ${ratio(changed, "sync", "diff").toFixed(2)}× | ${mark(ratio(changed, "sync", "diff") >= 1)} |
| Contention: 8 clients on one member, zero errors | ${contention.sync.failed} failed of ${contention.sync.transactions} | ${mark(contention.sync.failed === 0)} |
| Migration of the dirty ${(mig.rows / 1e6).toFixed(mig.rows >= 1e6 ? 0 : 2)}M-row table ≤ 2.5× a plain unique index build | ${migRatio.toFixed(1)}× | ${mark(migRatio <= 2.5)} |

## 1. No-op login (the user's groups did not change)

Data: ${SIZE.users.toLocaleString("en")} users, ${SIZE.groups.toLocaleString("en")} groups, ${GROUPS_PER_USER} groups per user (${(SIZE.users * GROUPS_PER_USER).toLocaleString("en")} memberships), a random user per call. WAL and row writes are per call, read from \`pg_current_wal_insert_lsn()\` and \`pg_stat_user_tables\` around each run (background activity included).

**2 clients**

| Variant | Logins/s | vs limit | WAL B/call | Row writes/call |
| --- | ---: | ---: | ---: | ---: |
${tableNoop(r2)}

**8 clients**

| Variant | Logins/s | vs limit | WAL B/call | Row writes/call |
| --- | ---: | ---: | ---: | ---: |
${tableNoop(r8)}

Why the sync stays under 0.7× of the limit: the limit is one index scan sent as a top-level prepared statement; a no-op sync is a PL/pgSQL call that takes the member lock and then runs one statement with two index lookups (the member and the listed groups must be live groups, and the member's current groups), so that bad input is refused even when nothing would change. Measured separately on PostgreSQL 15 while tuning (2 clients, 100,000 users): an empty PL/pgSQL call costs about what the limit's SELECT does; a statement inside a function costs about 10 µs more than the same statement at top level, and each subquery 6–10 µs more; the lock and the membership read alone, with no validation, reach 0.63× of the limit. What was tried: forcing generic plans (3.0k → 9.3k calls/s; PL/pgSQL had been re-planning its statement on every call), one statement instead of seven subqueries with the sets compared by array containment (→ about 11k), a partial covering index on \`role\` for the validation (no change), the lock as an expression instead of \`PERFORM\` (no measurable change). What is left to trade is the validation itself, which this package keeps. Against the legacy path at 8 clients, group commit amortises the legacy path's WAL flushes (it gains from 2 to 8 clients) while the sync, CPU-bound on 2 cores shared with pgbench, does not.

## 2. Changed login (one group added, one removed), 2 clients

| Variant | Logins/s | vs diff | WAL B/call | Row writes/call |
| --- | ---: | ---: | ---: | ---: |
${["diff", "sync", "legacy"].map((v) => `| ${v} | ${tpsOf(changed, v).toFixed(0)} | ${(tpsOf(changed, v) / tpsOf(changed, "diff")).toFixed(2)}× | ${walOf(changed, v).toFixed(0)} | ${writesOf(changed, v).toFixed(2)} |`).join("\n")}

The sync's writes per change: the deleted row, the inserted row, and the member's \`rolesync.role_membership_version\` bump (the guard that makes snapshot isolation safe).

## 3. Contention: 8 clients logging in one member, half the calls changing a group

| Variant | Logins/s | p50 ms | p99 ms | Failed |
| --- | ---: | ---: | ---: | ---: |
${(["sync", "legacy"] as const).map((v) => `| ${v} | ${contention[v].tps.toFixed(0)} | ${pct(contention[v].latenciesMs!, 50).toFixed(2)} | ${pct(contention[v].latenciesMs!, 99).toFixed(2)} | ${contention[v].failed} |`).join("\n")}

Calls for one member run one at a time by design (the member lock), so this is the worst case for one user, not for the server. The legacy path runs error-free here only because the guard trigger serialises it the same way.

## 4. Bloat after ${SIZE.bloatLogins.toLocaleString("en")} no-op logins (autovacuum off for the run)

Both runs start from the same copy of the dataset, taken after the runs above (which already churned it); the first column is the table as loaded, before any login: ${((fresh.heap + fresh.pkey + fresh.group_idx) / fresh.rows).toFixed(0)} bytes per membership, indexes included.

| | as loaded | after legacy | after sync |
| --- | ---: | ---: | ---: |
| table (heap) | ${(fresh.heap / 1048576).toFixed(1)} MiB | ${(bloated.legacy.heap / 1048576).toFixed(1)} MiB | ${(bloated.sync.heap / 1048576).toFixed(1)} MiB |
| role_membership_pkey | ${(fresh.pkey / 1048576).toFixed(1)} MiB | ${(bloated.legacy.pkey / 1048576).toFixed(1)} MiB | ${(bloated.sync.pkey / 1048576).toFixed(1)} MiB |
| group index | ${(fresh.group_idx / 1048576).toFixed(1)} MiB | ${(bloated.legacy.group_idx / 1048576).toFixed(1)} MiB | ${(bloated.sync.group_idx / 1048576).toFixed(1)} MiB |
| dead tuples | 0 | ${bloated.legacy.dead.toLocaleString("en")} | ${bloated.sync.dead.toLocaleString("en")} |
| WAL per login | | ${bloated.legacy.walBytesPerLogin.toFixed(0)} B | ${bloated.sync.walBytesPerLogin.toFixed(1)} B |
| logins/s (4 clients) | | ${bloated.legacy.tps.toFixed(0)} | ${bloated.sync.tps.toFixed(0)} |

## 5. Migration of a dirty legacy table

${mig.rows.toLocaleString("en")} memberships in Aleph's pre-4.1 shape, of which ${mig.duplicates.toLocaleString("en")} (1%) duplicated, plus ${mig.nullRows} NULL rows; a writer inserting a membership every 20 ms throughout. Compared, alternately, with \`CREATE UNIQUE INDEX\` on the same rows without the dirt.

| | Seconds (median of 2) |
| --- | ---: |
| plain \`CREATE UNIQUE INDEX\` on clean rows | ${median(mig.indexSeconds).toFixed(1)} |
| \`rolesync migrate\` on the dirty rows | ${median(mig.migrationSeconds).toFixed(1)} (${migRatio.toFixed(1)}×) |
${mig.steps.map((s) => `| &nbsp;&nbsp;${s.name} | ${s.seconds.toFixed(1)} |`).join("\n")}

Writer latency during the migration: p50 ${pct(w, 50).toFixed(1)} ms, p99 ${pct(w, 99).toFixed(1)} ms, max ${w[w.length - 1].toFixed(0)} ms (${w.length} writes).

Why the 2.5× target is missed: staying online costs concurrent index builds (the group index, which the guard's duplicate check needs before the key exists, and the unique key, twice: 0.1.0's primary-key index (000006) and rolesync's own key index (000010), which a no-transaction migration cannot make conditional; on this table, without Aleph's Alembic ledger, 000012 drops the second again, and on an Aleph database before 4.1 it drops the first), and a concurrent build scans the table twice and validates; the baseline is one non-concurrent build that blocks every writer while it runs. The builds take most of the time; the dedupe (one index-only pass over the group index, then only the duplicated pairs' rows) and the NOT NULL validation (one sequential scan) are the remainder. The first draft of the dedupe, a window over the whole table, took 20 s of a 33 s migration on this table; the current one takes about 4 s. Raising \`maintenance_work_mem\` (for example with \`?options=-c%20maintenance_work_mem%3D256MB\` on the connection string) shortens both builds; measured once on this machine: a concurrent build 4.6 s → 3.5 s, a plain one 2.9 s → 2.5 s.

## The machine and the commands

- ${os.cpus().length} × ${os.cpus()[0]?.model ?? "CPU"}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB RAM, ${os.type()} ${os.release()}, Node ${process.version}
- PostgreSQL: ${server.kind === "embedded" ? "the embedded server `npm test` uses, durable settings" : "DATABASE_URL's server"}
${settings.map((s) => `  - ${s}`).join("\n")}
- pgbench, in prepared mode (\`-M prepared\`); ids are sent as typed parameters, the group list as \`array[...]::int[]\`:

\`\`\`
${commands.join("\n")}
\`\`\`

The scripts (\`:uid\` is a random user; \`g0\`…\`g4\` are the user's five groups, computed from the id):

\`\`\`sql
-- limit
${SQL.limit.trim()}
-- sync
${SQL.sync.trim()}
-- diff in the client, no-op (the client read the rows and found nothing to change)
${SQL.diffNoop.trim()}
-- diff in the client, changed (Django's groups.set(): read, delete the removed, insert the added)
${SQL.diffChange.trim()}
-- legacy (Aleph before the fix: delete every membership, insert the list)
${SQL.legacy.trim()}
\`\`\`
`;
  mkdirSync(outDir, { recursive: true });
  writeFileSync(path.join(outDir, "benchmarks.md"), md);
  writeFileSync(path.join(outDir, "benchmarks.svg"), chart(noop));
  log(`wrote ${path.join(outDir, "benchmarks.md")} and benchmarks.svg in ${((Date.now() - started) / 1000).toFixed(0)} s`);
} catch (e) {
  console.error(`[bench] failed: ${(e as Error).stack ?? e}`);
  exitCode = 1;
} finally {
  await dropDatabase(server, base).catch(() => {});
  await server.stop();
  rmSync(workDir, { recursive: true, force: true });
}
process.exit(exitCode);
