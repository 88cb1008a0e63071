/*
 * `npm run bench`: sync_role_memberships against the physical limit and
 * against the legacy path, measured side by side with pgbench; the
 * migration of a dirty 5,000,000-row table against a plain index build;
 * every login across a network (a delaying proxy), Aleph's whole callback
 * with the plugin off and on; and the scale curve, 10^5 to 10^7
 * memberships. Writes the measurements to docs/benchmarks.json, then
 * renders docs/benchmarks.md and its three charts from them
 * (scripts/bench/bench-render.ts, also `npm run bench:render`, which
 * renders again without measuring).
 *
 * These machines are shared and noisy: absolute numbers are context, ratios
 * are the result. Each comparison alternates its variants (A B C A B C ...)
 * within one process and reports medians.
 *
 *   npm run bench                 # full size, about 22 minutes on 2 cores
 *   npm run bench -- --toy        # tiny sizes, about 2 minutes (what the test runs)
 *   npm run bench -- --out DIR    # write the results and the report elsewhere
 */
import { $ } from "zx";
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { createDatabase, dropDatabase, startServerOrExit, uniqueName, withClient, type Server } from "../server/db.ts";
import { pgEnv } from "../test/pgtap.ts";
import { ALEPH_SCHEMA, alephLegacyLogin } from "../server/fixtures.ts";
import { OneLineError, removeOnExit, takePgOption, unlessInterrupted } from "../server/embedded.ts";
import { startDelayProxy, tuneRoundTrip } from "./network.ts";
import { renderReport, type BenchResults, type CallbackCell, type Compared, type Latencies, type NetworkCell, type Run } from "./bench-render.ts";
import { preparePython, venvPython } from "../test/pytest.ts";
import { DEFAULT_MAINTENANCE_WORK_MEM, packageRoot, runMigrations } from "../../src/migrate.ts";

$.verbose = false;
/** `--toy`, `--out DIR` and `--pg N`; anything else, or a major outside 10 to 18, stops here, before any server starts. */
function parseArgs(argv: string[]): { toy: boolean; outDir: string } {
  try {
    const rest = takePgOption(argv, "npm run bench -- --pg 15");
    let toy = false;
    let outDir = path.join(packageRoot, "docs");
    for (let i = 0; i < rest.length; i++) {
      if (rest[i] === "--toy") toy = true;
      else if (rest[i] === "--out" && rest[i + 1] !== undefined && !rest[i + 1].startsWith("-")) outDir = path.resolve(rest[++i]);
      else throw new OneLineError(`unknown argument ${rest[i]}: the bench takes --toy, --out DIR and --pg N`);
    }
    return { toy, outDir };
  } catch (e) {
    if (!(e instanceof OneLineError)) throw e;
    console.error(`[bench] ${e.message}`);
    process.exit(1);
  }
}
const { toy, outDir } = parseArgs(process.argv.slice(2));

const SIZE = toy
  ? { users: 2_000, groups: 100, seconds: 1, rounds: 2, slice: 50, bloatLogins: 2_000, bigUsers: 10_000, contentionSeconds: 1 }
  : { users: 100_000, groups: 1_000, seconds: 5, rounds: 3, slice: 1_000, bloatLogins: 100_000, bigUsers: 1_000_000, contentionSeconds: 10 };
const GROUPS_PER_USER = 5;
const log = (s: string) => console.log(`[bench] ${s}`);
const workDir = mkdtempSync(path.join(os.tmpdir(), "rolesync-bench-"));
// Gone at exit, and on Ctrl-C too (with the embedded server, if one runs).
const releaseWorkDir = removeOnExit(workDir);
const commands: string[] = [];

/* ------------------------------------------------------------------ pgbench */

/** A run as pgbench measured it, with every transaction's latency when asked for. */
interface MeasuredRun extends Run {
  latenciesMs?: number[];
  /**
   * pgbench's "latency average": the run's time over its transactions, per
   * client. Exact where the per-transaction log is not: pgbench reads its
   * clock lazily, and logs 0 µs for many transactions shorter than about 50 µs.
   */
  latencyAverageMs: number;
}

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
/** What the results keep of a latency log (sorted, in ms). */
const latencies = (sorted: number[]): Latencies => ({
  count: sorted.length,
  p50: pct(sorted, 50),
  p99: pct(sorted, 99),
  max: sorted[sorted.length - 1],
});

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
  opts: {
    clients: number;
    seconds?: number;
    transactionsPerClient?: number;
    defines?: Record<string, number>;
    latencies?: boolean;
    /** pgbench's -M: prepared (the default here), or simple, as psycopg2 sends a statement. */
    protocol?: "prepared" | "simple";
  },
): Promise<MeasuredRun> {
  const file = path.join(workDir, `${name}.sql`);
  writeFileSync(file, script);
  const logPrefix = path.join(workDir, `log-${name}-${Date.now()}`);
  const argv = [
    "-n", "-M", opts.protocol ?? "prepared", "-c", String(opts.clients), "-j", String(opts.clients),
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
  const latencyAverageMs = Number(/latency average = ([\d.]+) ms/.exec(out.stdout)?.[1]);
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
    latencyAverageMs,
  };
}

/* ---------------------------------------------------------------- scripts */

// Group k of user u: state A uses k = 0..4; state B swaps k = 4 for k = 5.
const groupOf = (k: string) => `1 + (:uid * 7 + ${k} * 131) % :groups`;
/** The member's n groups as pgbench variables g0 … g(n-1), the last one's k given (state A: n - 1). */
const groupVars = (n: number, last: string) =>
  Array.from({ length: n }, (_, k) => `\\set g${k} ${groupOf(k === n - 1 ? last : String(k))}`).join("\n") + "\n";
const setGroups = (k4: string) => groupVars(GROUPS_PER_USER, k4);
/** The no-op or changed sync of n groups (the g variables above). */
const syncOf = (n: number) =>
  `select added, removed from sync_role_memberships(:uid, array[${Array.from({ length: n }, (_, k) => `:g${k}`).join(", ")}]::int[]);\n`;
const randomUser = `\\set uid random(:first_user, :last_user)\n`;
// Changed logins: each client walks its own slice of users twice, flipping each between A and B.
const walkSlice = `\\set n :n + 1
\\set uid :first_user + :client_id * :slice + mod(:n - 1, :slice)
\\set pass (:n - 1) / :slice
\\set k4 5 - mod(:pass, 2)
\\set old_k4 4 + mod(:pass, 2)
\\set old_g ${groupOf(":old_k4")}
`;
/** The same walk for members of n groups: the last group flips between k = n - 1 (state A) and k = n (state B). */
const walkSliceOf = (n: number) => `\\set n :n + 1
\\set uid :first_user + :client_id * :slice + mod(:n - 1, :slice)
\\set pass (:n - 1) / :slice
\\set klast ${n} - mod(:pass, 2)
`;

const SQL = {
  limit: "select group_id from role_membership where member_id = :uid;\n",
  sync: "select added, removed from sync_role_memberships(:uid, array[:g0, :g1, :g2, :g3, :g4]::int[]);\n",
  legacy:
    "begin;\ndelete from role_membership where member_id = :uid;\n" +
    "insert into role_membership (group_id, member_id) values (:g0, :uid), (:g1, :uid), (:g2, :uid), (:g3, :uid), (:g4, :uid);\ncommit;\n",
  diffNoop: "begin;\nselect group_id from role_membership where member_id = :uid;\ncommit;\n",
  // A careful hand-written sync, one call like the sync (CAREFUL_SYNC below).
  careful: "select bench_careful_sync(:uid, array[:g0, :g1, :g2, :g3, :g4]::int[]);\n",
  diffChange:
    "begin;\nselect group_id from role_membership where member_id = :uid;\n" +
    "delete from role_membership where member_id = :uid and group_id = :old_g;\n" +
    "insert into role_membership (group_id, member_id) values (:g4, :uid);\ncommit;\n",
};

/** The network cells' variants: name, script, protocol, and whether it changes the member's groups. */
const networkVariants = (): [string, string, "prepared" | "simple", boolean][] => [
  ["limit", randomUser + SQL.limit, "prepared", false],
  ["sync", randomUser + setGroups("4") + SQL.sync, "prepared", false],
  ["changed", walkSlice + setGroups(":k4") + SQL.sync, "prepared", true],
  ["diff", walkSlice + setGroups(":k4") + SQL.diffChange, "prepared", true],
  ["legacy", randomUser + setGroups("4") + SQL.legacy, "prepared", false],
  ["aleph", randomUser + setGroups("4") + ALEPH_ORM_LOGIN, "simple", false],
  ["plugin", randomUser + setGroups("4") + PLUGIN_LOGIN, "simple", false],
];

/**
 * The careful hand-written sync the no-op is compared with, created in the
 * bench's database only: the member's lock, then the exact set (DELETE … <>
 * ALL, INSERT … ON CONFLICT DO NOTHING), with no validation, no version
 * table and no no-op fast path; PL/pgSQL with generic plans, as the sync.
 */
const CAREFUL_SYNC = `
create function public.bench_careful_sync(member integer, groups integer[]) returns void
language plpgsql volatile
set search_path = pg_catalog, pg_temp
as $$
begin
  perform pg_advisory_xact_lock(1919904869, member);
  delete from public.role_membership m where m.member_id = member and m.group_id <> all (groups);
  insert into public.role_membership (group_id, member_id)
  select distinct g, member from unnest(groups) g
  on conflict do nothing;
end
$$;
do $$
begin
  if current_setting('server_version_num')::integer >= 120000 then
    alter function public.bench_careful_sync(integer, integer[]) set plan_cache_mode = force_generic_plan;
  end if;
end
$$;`;

/* ---------------------------------------------------------------- network */

/** The round trips the network cells ask for, in ms (0: direct, no proxy), and their connection counts. */
const ROUND_TRIPS_MS = toy ? [0, 0.5] : [0, 0.5, 2];
const NETWORK_CLIENTS = [1, 4];
/**
 * The users the network's changed logins walk: the last ones, a slice per
 * connection; the other cells pick among the rest, whose groups they never change.
 */
const NETWORK_CHANGED = (() => {
  const slice = toy ? 50 : 500;
  return { slice, firstUser: SIZE.groups + SIZE.users - Math.max(...NETWORK_CLIENTS) * slice + 1 };
})();

/**
 * Aleph's own login of a user whose token names the 5 groups it has, as its
 * ORM sends it (../shared/context/aleph-bug.md section 4): the user by
 * foreign id, its memberships (a lazy load), the UPDATE of the user, one
 * DELETE per membership (an executemany: a round trip each), then per
 * group its SELECT, UPDATE and the INSERT of the membership; the callback's
 * last_login_at goes out with the user's UPDATE. 19 statements as the ORM
 * counts them (the executemany as one), 23 sent, each a round trip, BEGIN
 * and COMMIT aside. psycopg2 sends them with the simple protocol.
 */
const ALEPH_ORM_LOGIN = (() => {
  const role = "select id, foreign_id, name, email, type, is_admin, is_muted, is_blocked, is_tester, created_at, updated_at, deleted_at from role";
  const groups = [0, 1, 2, 3, 4];
  return [
    "\\set u :uid - :groups",
    "begin;",
    `${role} where foreign_id = 'oidc:u' || :u::int limit 1;`,
    `${role} join role_membership m on m.group_id = role.id where m.member_id = :uid;`,
    "update role set updated_at = now(), last_login_at = now() where id = :uid;",
    ...groups.map((k) => `delete from role_membership where group_id = :g${k} and member_id = :uid;`),
    ...groups.flatMap((k) => [
      `${role} where foreign_id = 'group:g' || :g${k}::int limit 1;`,
      `update role set updated_at = now() where id = :g${k};`,
      `insert into role_membership (group_id, member_id) values (:g${k}, :uid);`,
    ]),
    "commit;",
  ].join("\n") + "\n";
})();

/**
 * The plugin's login, as the Aleph 4.1 callback sends it through SQLAlchemy:
 * the one call (Aleph's rules: OAUTH_MIGRATE_SUB on, touch always), the
 * callback's reload of the user, its last_login_at. 3 statements.
 */
const PLUGIN_LOGIN =
  [
    "\\set u :uid - :groups",
    "begin;",
    "select member_id, added, removed, created from sync_aleph_login('oidc:u' || :u::int, 'u' || :u::int, null, " +
      "array['group:g' || :g0::int, 'group:g' || :g1::int, 'group:g' || :g2::int, 'group:g' || :g3::int, 'group:g' || :g4::int]::text[], " +
      "false, false, true, 'on_create', false, 'grant', 'always', null, null);",
    "select id, foreign_id, name, email, type, is_admin, is_muted, is_blocked, is_tester, created_at, updated_at, deleted_at, last_login_at from role where id = :uid;",
    "update role set last_login_at = now() where id = :uid;",
    "commit;",
  ].join("\n") + "\n";

/** Statements a script sends per login, BEGIN and COMMIT aside, and its round trips, them included. */
function statementsOf(script: string): { statements: number; roundTrips: number } {
  const sql = script.split("\n").filter((l) => l.trim() && !l.startsWith("\\"));
  const control = sql.filter((l) => /^(begin|commit);$/i.test(l.trim())).length;
  return { statements: sql.length - control, roundTrips: sql.length };
}

/**
 * The logins measured across the network, each at each round trip and
 * connection count: the bare read (the limit), the no-op sync, a changed
 * login through the sync and through the client-side diff, the legacy
 * delete-then-insert, Aleph's own ORM login and the plugin's. The changed
 * ones walk users of their own (NETWORK_CHANGED below), two passes each,
 * so every run leaves them as it found them.
 */
async function network(url: string, defines: Record<string, number>): Promise<NonNullable<BenchResults["network"]>> {
  const proxy = await startDelayProxy(url);
  const cells: NetworkCell[] = [];
  const callbacks: CallbackCell[] = [];
  const roundTrips: NonNullable<BenchResults["network"]>["roundTrips"] = [];
  try {
    for (const target of ROUND_TRIPS_MS) {
      for (const clients of NETWORK_CLIENTS) {
        const cellUrl = target === 0 ? url : proxy.url;
        // The round trip this cell has: `select 1` at its connection count, pgbench's latency average, through the proxy or direct.
        const selectOne = async (u: string) => (await pgbench(u, `rtt-c${clients}`, "select 1;\n", { clients, seconds: 1 })).latencyAverageMs;
        const direct = await selectOne(url);
        const measured = target === 0 ? direct : await tuneRoundTrip(proxy, target, () => selectOne(proxy.url));
        roundTrips.push({ targetMs: target, clients, directMs: direct, measuredMs: measured, proxyDelayMs: target === 0 ? null : proxy.delayMs });
        log(`network ${target} ms, ${clients} client(s): select 1 takes ${measured.toFixed(3)} ms (direct ${direct.toFixed(3)} ms)`);
        // The changed logins: two passes over a slice sized so a run lasts about SIZE.seconds.
        const slice = Math.max(10, Math.min(NETWORK_CHANGED.slice, Math.round((SIZE.seconds * 1000) / (2 * (5 * Math.max(measured, 0.05) + 0.5)))));
        const changedDefines = { ...defines, first_user: NETWORK_CHANGED.firstUser, n: 0, slice };
        for (const [variant, script, protocol, changed] of networkVariants()) {
          const run = await pgbench(cellUrl, `net-${target}-c${clients}-${variant}`, script, {
            clients,
            ...(changed ? { transactionsPerClient: 2 * slice, defines: changedDefines } : { seconds: SIZE.seconds, defines: { ...defines, last_user: NETWORK_CHANGED.firstUser - 1 } }),
            latencies: true,
            protocol,
          });
          if (run.failed) throw new Error(`network ${target} ms ${variant}: ${run.failed} failed transactions`);
          const lat = latencies(run.latenciesMs!);
          cells.push({ targetMs: target, clients, variant, rttMs: measured, tps: run.tps, perConnection: run.tps / clients, latencyMs: lat, ...statementsOf(script) });
          log(`network ${target} ms, ${clients} client(s), ${variant}: ${(run.tps / clients).toFixed(0)} logins/s per connection, p50 ${lat.p50.toFixed(2)} ms, p99 ${lat.p99.toFixed(2)} ms`);
        }
      }
    }
    // Aleph's whole OAuth callback, with and without the plugin, direct and at ~0.5 ms.
    // (At toy size only at ~0.5 ms: each cell starts a Python process, whose imports alone take a second.)
    for (const target of ROUND_TRIPS_MS.filter((t) => (toy ? t === 0.5 : t <= 0.5))) {
      const tuned = roundTrips.find((t) => t.targetMs === target && t.clients === 1)!;
      if (target > 0) await proxy.setDelay(tuned.proxyDelayMs!);
      const rttUrl = target === 0 ? url : proxy.url;
      const rtt = (await pgbench(rttUrl, "rtt-callback", "select 1;\n", { clients: 1, seconds: 1 })).latencyAverageMs;
      for (const c of await alephCallback(url, target === 0 ? null : proxy.url)) callbacks.push({ ...c, targetMs: target, rttMs: rtt });
      log(`network ${target} ms: Aleph's callback measured (select 1 ${rtt.toFixed(3)} ms)`);
    }
  } finally {
    await proxy.stop();
  }
  return { roundTrips, cells, callbacks };
}

/**
 * Aleph 4.1's whole OAuth callback (the stand-in of python/tests, run by
 * aleph_callback.py in the harness's virtual environment), plugin off and
 * on, nothing changed and one group changed, 1 and 4 connections.
 */
async function alephCallback(url: string, proxyUrl: string | null): Promise<Omit<CallbackCell, "targetMs" | "rttMs">[]> {
  let python = venvPython();
  if (!python) {
    const problem = await preparePython(log);
    if (problem) throw new Error(`the whole-callback logins need Python: ${problem}`);
    python = venvPython()!;
  }
  const args = [
    fileURLToPath(new URL("./aleph_callback.py", import.meta.url)),
    "--admin-url", url,
    ...(proxyUrl ? ["--through", new URL(proxyUrl).host] : []),
    "--seconds", String(SIZE.seconds),
    "--users", String(toy ? 40 : 400),
  ];
  const out = await $({ nothrow: true, env: { ...process.env, ROLESYNC_BIN: path.join(packageRoot, "dist", "bin.js") } })`${python} ${args}`;
  if (out.exitCode !== 0) throw new Error(`aleph_callback.py failed (exit ${out.exitCode}):\n${out.stdout}\n${out.stderr}`);
  return (JSON.parse(out.stdout.trim().split("\n").at(-1)!) as { cells: Omit<CallbackCell, "targetMs" | "rttMs">[] }).cells;
}

/* ---------------------------------------------------------------- dataset */

async function loadDataset(url: string, users: number, groups: number, groupsPerUser = GROUPS_PER_USER) {
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
       select 1 + (u * 7 + k * 131) % $2, u from generate_series($2 + 1, $2 + $1) u, generate_series(0, $3 - 1) k`,
      [users, groups, groupsPerUser],
    );
    await c.query("alter table role_membership enable trigger role_membership_guard");
    await c.query("vacuum analyze");
    await c.query("checkpoint");
  });
}

/* ------------------------------------------------------------------ cases */

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

/** The groups of every dataset (ids 1 to 1,000); the users come after them, with ids from 1,001. */
const LEGACY_GROUPS = 1000;

/** Aleph's pre-4.1 tables with `users` users of 5 groups each; its foreign keys are dropped for the bulk load and put back, as a restore does. */
async function loadLegacy(url: string, users: number) {
  await withClient(url, async (c) => {
    await c.query(ALEPH_SCHEMA);
    await c.query(`alter table public.role_membership
                     drop constraint role_membership_group_id_fkey, drop constraint role_membership_member_id_fkey`);
    await c.query(
      `insert into public.role (foreign_id, name, type, is_admin, is_muted, is_blocked, is_tester)
       select 'group:g' || g, 'g' || g, 'group', false, false, false, false from generate_series(1, $1) g`,
      [LEGACY_GROUPS],
    );
    await c.query(
      `insert into public.role (foreign_id, name, type, is_admin, is_muted, is_blocked, is_tester)
       select 'oidc:u' || u, 'u' || u, 'user', false, false, false, false from generate_series(1, $1) u`,
      [users],
    );
    await c.query(
      `insert into public.role_membership (group_id, member_id)
       select 1 + (u * 7 + k * 131) % $2, $2 + u from generate_series(1, $1) u, generate_series(0, 4) k`,
      [users, LEGACY_GROUPS],
    );
    await c.query(`alter table public.role_membership
                     add constraint role_membership_group_id_fkey foreign key (group_id) references public.role (id),
                     add constraint role_membership_member_id_fkey foreign key (member_id) references public.role (id)`);
    await c.query("vacuum analyze");
    await c.query("checkpoint");
  });
}

/** The clean rows made dirty: 1% of the pairs duplicated, plus 1,000 NULL rows. */
async function makeDirty(url: string): Promise<{ duplicates: number; nullRows: number }> {
  return withClient(url, async (c) => {
    const dup = await c.query(
      "insert into public.role_membership select group_id, member_id from public.role_membership where member_id % 100 = 0",
    );
    const nul = await c.query(
      `insert into public.role_membership
       select null, 1000 + g from generate_series(1, 500) g union all select g, null from generate_series(1, 500) g`,
    );
    await c.query("checkpoint");
    return { duplicates: dup.rowCount ?? 0, nullRows: nul.rowCount ?? 0 };
  });
}

/**
 * A writer doing Aleph's own legacy login for one user (delete the user's
 * rows, insert them again) every 20 ms, until stopped. Each login's wait is
 * kept with the moment it started (performance.now()); `phase` picks the
 * list the next ones go to.
 */
function legacyWriter(url: string, member: number) {
  const waits = { before: [] as { at: number; ms: number }[], during: [] as { at: number; ms: number }[] };
  const errors: string[] = [];
  let phase: keyof typeof waits = "before";
  let writing = true;
  const done = (async () => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    while (writing) {
      const t = performance.now();
      try {
        await alephLegacyLogin(c, member, LEGACY_GROUPS);
        waits[phase].push({ at: t, ms: performance.now() - t });
      } catch (e) {
        errors.push((e as { code?: string }).code ?? (e as Error).message);
        await c.query("rollback").catch(() => {});
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    await c.end();
  })();
  return {
    waits,
    errors,
    during: () => void (phase = "during"),
    stop: async () => {
      writing = false;
      await done;
    },
  };
}

/** Where a writer's wait that began before the first migration's step fell. */
const RUNNER_START = "the runner's start (its checks and hooks, before 000001)";

/**
 * The migration of `cleanDb`'s rows made dirty, in a copy, beside the legacy
 * writer: the writer alone for SIZE.seconds, then throughout the migration.
 * Returns the migration's time and steps, the writer's waits, and the step
 * that was running when the longest wait during it began.
 */
async function migrateBesideWriter(server: Server, cleanDb: string, users: number) {
  const name = uniqueName("rolesync_bench_migrate");
  const url = await createDatabase(server, name, cleanDb);
  try {
    const dirt = await makeDirty(url);
    const writer = legacyWriter(url, LEGACY_GROUPS + users); // a real user: the FK holds
    await new Promise((r) => setTimeout(r, SIZE.seconds * 1000));
    writer.during();
    const stepStarts: { name: string; at: number }[] = [];
    const t0 = performance.now();
    const migrated = await runMigrations({
      databaseUrl: url,
      onEvent: (e) => void (e.type === "migration" && stepStarts.push({ name: e.name, at: performance.now() })),
    });
    const seconds = (performance.now() - t0) / 1000;
    await writer.stop();
    const longest = writer.waits.during.reduce((a, b) => (b.ms > a.ms ? b : a), { at: t0, ms: 0 });
    const step = stepStarts.filter((s) => s.at <= longest.at).at(-1)?.name ?? RUNNER_START;
    return {
      ...dirt,
      seconds,
      steps: migrated.steps,
      waitsBeforeMs: writer.waits.before.map((w) => w.ms).sort((x, y) => x - y),
      waitsMs: writer.waits.during.map((w) => w.ms).sort((x, y) => x - y),
      longestWaitStep: step,
      errors: writer.errors,
    };
  } finally {
    await dropDatabase(server, name);
  }
}

async function migration(server: Server) {
  const rows = SIZE.bigUsers * GROUPS_PER_USER;
  const clean = uniqueName("rolesync_bench_clean");
  const cleanUrl = await createDatabase(server, clean);
  const result = {
    rows,
    duplicates: 0,
    nullRows: 0,
    indexSeconds: [] as number[],
    migrationSeconds: [] as number[],
    steps: [] as { name: string; seconds: number }[],
    aloneSeconds: [] as number[],
    aloneSteps: [] as { name: string; seconds: number }[],
    writerWaitsBeforeMs: [] as number[],
    writerWaitsMs: [] as number[],
    writerErrors: [] as string[],
    maintenanceWorkMem: DEFAULT_MAINTENANCE_WORK_MEM,
  };
  try {
    log(`loading a legacy table with ${rows.toLocaleString("en")} memberships`);
    await loadLegacy(cleanUrl, SIZE.bigUsers);
    for (let round = 1; round <= 2; round++) {
      // A: a plain unique index build on the clean rows.
      const a = uniqueName("rolesync_bench_index");
      const aUrl = await createDatabase(server, a, clean);
      try {
        const t0 = performance.now();
        // With the memory the migration's builds get (the runner's default), so that the ratio compares like with like.
        await withClient(aUrl, async (c) => {
          await c.query(`set maintenance_work_mem = '${DEFAULT_MAINTENANCE_WORK_MEM}'`);
          await c.query("create unique index on public.role_membership (member_id, group_id)");
        });
        result.indexSeconds.push((performance.now() - t0) / 1000);
      } finally {
        await dropDatabase(server, a);
      }
      // B: the migration on the same rows made dirty, with the legacy writer running (on a
      // table without an index each of its deletes is a sequential scan).
      const b = await migrateBesideWriter(server, clean, SIZE.bigUsers);
      Object.assign(result, { duplicates: b.duplicates, nullRows: b.nullRows, steps: b.steps });
      result.migrationSeconds.push(b.seconds);
      result.writerWaitsBeforeMs.push(...b.waitsBeforeMs);
      result.writerWaitsMs.push(...b.waitsMs);
      result.writerErrors.push(...b.errors);
      // C: the same migration with the machine to itself, as the plain build has it.
      const c = uniqueName("rolesync_bench_alone");
      const cUrl = await createDatabase(server, c, clean);
      try {
        await makeDirty(cUrl);
        const t0 = performance.now();
        const migrated = await runMigrations({ databaseUrl: cUrl });
        result.aloneSeconds.push((performance.now() - t0) / 1000);
        result.aloneSteps = migrated.steps;
      } finally {
        await dropDatabase(server, c);
      }
      log(
        `migration round ${round}: index ${result.indexSeconds.at(-1)!.toFixed(1)} s, ` +
          `migration ${result.migrationSeconds.at(-1)!.toFixed(1)} s with the writer, ${result.aloneSeconds.at(-1)!.toFixed(1)} s alone`,
      );
    }
  } finally {
    await dropDatabase(server, clean);
  }
  result.writerWaitsMs.sort((x, y) => x - y);
  result.writerWaitsBeforeMs.sort((x, y) => x - y);
  return result;
}

/* ------------------------------------------------------------------ scale */

/** The scale curve's table sizes (memberships) and shapes (groups per user); 1,000 groups at each. */
const SCALE_SIZES = toy ? [10_000, 50_000] : [100_000, 1_000_000, 10_000_000];
const SCALE_SHAPES = [5, 50];

/**
 * 7. The scale curve: at each size and shape, in a database of its own, the
 * bare read, the no-op sync (alternated, 2 clients) and a changed login
 * (each client walking its own slice of users twice); then, at each size,
 * the migration of a dirty legacy table of that size beside the writer.
 */
async function scale(server: Server): Promise<NonNullable<BenchResults["scale"]>> {
  const points: NonNullable<BenchResults["scale"]>["points"] = [];
  const migrations: NonNullable<BenchResults["scale"]>["migrations"] = [];
  for (const memberships of SCALE_SIZES) {
    for (const shape of SCALE_SHAPES) {
      const users = memberships / shape;
      const name = uniqueName("rolesync_bench_scale");
      const url = await createDatabase(server, name);
      try {
        await runMigrations({ databaseUrl: url, createAlephSchema: true });
        log(`scale: loading ${memberships.toLocaleString("en")} memberships, ${users.toLocaleString("en")} users of ${shape} groups`);
        const t0 = performance.now();
        await loadDataset(url, users, LEGACY_GROUPS, shape);
        const loadSeconds = (performance.now() - t0) / 1000;
        const bytes = await withClient(url, async (c) => {
          const { rows } = await c.query(
            `select pg_relation_size('role_membership') as heap, pg_relation_size('role_membership_pkey') as pkey,
                    pg_relation_size('role_membership_group_id_member_id_idx') as group_idx`,
          );
          return { heap: Number(rows[0].heap), pkey: Number(rows[0].pkey), groupIdx: Number(rows[0].group_idx) };
        });
        const defines = { first_user: LEGACY_GROUPS + 1, last_user: LEGACY_GROUPS + users, groups: LEGACY_GROUPS };
        const label = `scale-${memberships}-${shape}`;
        const reads = await alternate(url, label, {
          limit: randomUser + SQL.limit,
          sync: randomUser + groupVars(shape, String(shape - 1)) + syncOf(shape),
        }, { clients: 2, seconds: SIZE.seconds, defines });
        const slice = Math.min(toy ? 50 : 1000, Math.floor(users / 2));
        const changed = await alternate(url, `${label}-changed`, {
          changed: walkSliceOf(shape) + groupVars(shape, ":klast") + syncOf(shape),
        }, { clients: 2, transactionsPerClient: 2 * slice, defines: { ...defines, n: 0, slice } });
        points.push({ memberships, groupsPerUser: shape, users, loadSeconds, bytes, reads, changed });
      } finally {
        await dropDatabase(server, name);
      }
    }
    // The migration of a dirty legacy table of this size (5 groups per user), beside the writer.
    const users = memberships / GROUPS_PER_USER;
    const clean = uniqueName("rolesync_bench_scale_clean");
    const cleanUrl = await createDatabase(server, clean);
    try {
      log(`scale: migrating a dirty legacy table of ${memberships.toLocaleString("en")} memberships beside the writer`);
      await loadLegacy(cleanUrl, users);
      const m = await migrateBesideWriter(server, clean, users);
      migrations.push({
        memberships,
        duplicates: m.duplicates,
        nullRows: m.nullRows,
        seconds: m.seconds,
        steps: m.steps,
        writerWaitsBeforeMs: latencies(m.waitsBeforeMs),
        writerWaitsMs: latencies(m.waitsMs),
        longestWaitStep: m.longestWaitStep,
        writerErrors: m.errors,
      });
      log(`scale: ${memberships.toLocaleString("en")} migrated in ${m.seconds.toFixed(1)} s; the writer's longest wait ${m.waitsBeforeMs.at(-1)?.toFixed(0)} ms before, ${m.waitsMs.at(-1)?.toFixed(0)} ms during (${m.longestWaitStep})`);
    } finally {
      await dropDatabase(server, clean);
    }
  }
  return { groups: LEGACY_GROUPS, sizes: SCALE_SIZES, shapes: SCALE_SHAPES, points, migrations };
}

/* ------------------------------------------------------------------- main */

if ((await $({ nothrow: true })`sh -c ${"command -v pgbench"}`).exitCode !== 0) {
  console.error("[bench] pgbench is not installed.\nhint: on Debian it comes with the server package: apt-get install postgresql-15");
  process.exit(2);
}
const startedAt = new Date();
const server = await startServerOrExit({ durable: true, log, name: "[bench]", dropOnInterrupt: true });
const base = uniqueName("rolesync_bench");
let exitCode = 0;
try {
  const url = await createDatabase(server, base);
  await runMigrations({ databaseUrl: url, createAlephSchema: true });
  await withClient(url, (c) => c.query(CAREFUL_SYNC));
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
    return rows.map((r) => ({ name: r.name as string, setting: r.setting as string, unit: r.unit as string | null }));
  });
  const defines = { first_user: SIZE.groups + 1, last_user: SIZE.groups + SIZE.users, groups: SIZE.groups };

  // 1. No-op logins.
  const noop: Compared[] = [];
  for (const clients of [2, 8]) {
    noop.push(
      await alternate(url, `noop-c${clients}`, {
        limit: randomUser + SQL.limit,
        sync: randomUser + setGroups("4") + SQL.sync,
        careful: randomUser + setGroups("4") + SQL.careful,
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
  const contention = {} as BenchResults["contention"];
  for (const [variant, script] of [["sync", SQL.sync], ["legacy", SQL.legacy]] as const) {
    const { latenciesMs, ...run } = await pgbench(url, `contention-${variant}`,
      `\\set uid :first_user\n\\set k4 4 + random(0, 1)\n` + setGroups(":k4") + script,
      { clients: 8, seconds: SIZE.contentionSeconds, defines, latencies: true });
    contention[variant] = { ...run, latencyMs: latencies(latenciesMs!) };
    log(`contention ${variant}: ${run.tps.toFixed(0)} tps, failed ${run.failed}`);
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
  // 6. Across a network: last, since its ORM and plugin logins leave dead rows the sections above would meet.
  log("network: a delaying proxy between pgbench and the server (scripts/bench/delay_proxy.py)");
  const net = await network(url, defines);
  // 7. The scale curve, in databases of its own.
  const scaled = await scale(server);

  /* Write the results, then the report from them. */
  const { writerWaitsMs, writerWaitsBeforeMs, ...migrated } = mig;
  const results: BenchResults = {
    toy,
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    size: {
      users: SIZE.users,
      groups: SIZE.groups,
      groupsPerUser: GROUPS_PER_USER,
      seconds: SIZE.seconds,
      rounds: SIZE.rounds,
      slice: SIZE.slice,
      bloatLogins: SIZE.bloatLogins,
      bigUsers: SIZE.bigUsers,
      contentionSeconds: SIZE.contentionSeconds,
    },
    machine: {
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model ?? null,
      totalMemBytes: os.totalmem(),
      osType: os.type(),
      osRelease: os.release(),
      node: process.version,
    },
    server: { kind: server.kind, settings },
    commands,
    scripts: { ...SQL, carefulFunction: CAREFUL_SYNC, alephLogin: ALEPH_ORM_LOGIN, pluginLogin: PLUGIN_LOGIN },
    noop,
    changed,
    contention,
    fresh: fresh as BenchResults["fresh"],
    bloat: bloated as BenchResults["bloat"],
    migration: { ...migrated, writerWaitsBeforeMs: latencies(writerWaitsBeforeMs), writerWaitsMs: latencies(writerWaitsMs) },
    network: net,
    scale: scaled,
  };
  mkdirSync(outDir, { recursive: true });
  writeFileSync(path.join(outDir, "benchmarks.json"), JSON.stringify(results, null, 2) + "\n");
  // Rendered from the file just written, as `npm run bench:render` does.
  renderReport(outDir);
  log(`wrote ${path.join(outDir, "benchmarks.json")}, benchmarks.md and its charts in ${((Date.now() - startedAt.getTime()) / 1000).toFixed(0)} s`);
} catch (e) {
  await unlessInterrupted();
  console.error(`[bench] failed: ${(e as Error).stack ?? e}`);
  exitCode = 1;
} finally {
  await dropDatabase(server, base).catch(() => {});
  await server.stop();
  releaseWorkDir();
}
await unlessInterrupted(); // the hook exits with 128 + the signal
process.exit(exitCode);
