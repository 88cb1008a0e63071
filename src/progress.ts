/*
 * Progress of long statements (index builds, the dedupe), read on a second
 * connection from pg_stat_activity and pg_stat_progress_create_index while
 * the working connection, tagged with an application_name, runs them.
 */
import pg from "pg";
import { setTimeout as sleep } from "node:timers/promises";

export interface Progress {
  step: string;
  seconds: number;
  detail: string;
}

export function withApplicationName(url: string, applicationName: string): string {
  const u = new URL(url);
  u.searchParams.set("application_name", applicationName);
  return u.toString();
}

/** Polls every intervalMs until the returned stop function is called. */
export function watchProgress(
  url: string,
  applicationName: string,
  intervalMs: number,
  emit: (p: Progress) => void,
): () => Promise<void> {
  const stop = new AbortController();
  const client = new pg.Client({ connectionString: url });
  client.on("error", () => {}); // ended by the server: the next poll fails, and is ignored
  const done = (async () => {
    try {
      await client.connect();
    } catch {
      return; // progress is a nicety; the work reports its own errors
    }
    // pg_stat_progress_create_index is PostgreSQL 12+; before, progress is the statement and its wait.
    const { rows: v } = await client
      .query<{ n: number }>("select current_setting('server_version_num')::integer as n")
      .catch(() => ({ rows: [{ n: 0 }] }));
    const progress = v[0].n >= 120000
      ? `p.phase, p.blocks_done, p.blocks_total, p.lockers_total, p.lockers_done
             from pg_catalog.pg_stat_activity a
             left join pg_catalog.pg_stat_progress_create_index p on p.pid = a.pid`
      : `null::text as phase, null::bigint as blocks_done, null::bigint as blocks_total,
                  null::bigint as lockers_total, null::bigint as lockers_done
             from pg_catalog.pg_stat_activity a`;
    while (!stop.signal.aborted) {
      await sleep(intervalMs, undefined, { signal: stop.signal }).catch(() => {});
      if (stop.signal.aborted) break;
      const { rows } = await client
        .query<{
          query: string;
          seconds: number;
          wait: string | null;
          phase: string | null;
          blocks_done: string | null;
          blocks_total: string | null;
          lockers_total: string | null;
          lockers_done: string | null;
        }>(
          `select a.query,
                  extract(epoch from now() - a.query_start)::float8 as seconds,
                  nullif(concat_ws(':', a.wait_event_type, a.wait_event), '') as wait,
                  ${progress}
            where a.application_name = $1 and a.datname = current_database()
              and a.state = 'active' and a.pid <> pg_backend_pid()`,
          [applicationName],
        )
        .catch(() => ({ rows: [] }));
      for (const r of rows) {
        if (r.seconds < intervalMs / 1000) continue;
        const step =
          /create (?:unique )?index concurrently(?: if not exists)? (\w+)/i.exec(r.query)?.[1] ??
          (/dedupe_role_memberships/.test(r.query) ? "dedupe" : "statement");
        const parts: string[] = [];
        if (r.phase) {
          parts.push(r.phase);
          const total = Number(r.blocks_total);
          if (total > 0) parts.push(`${Math.round((100 * Number(r.blocks_done)) / total)}% of blocks`);
          if (Number(r.lockers_total) > 0) {
            parts.push(`waited for ${r.lockers_done}/${r.lockers_total} older transactions`);
          }
        }
        if (r.wait && (!r.phase || /waiting/.test(r.phase))) parts.push(`waiting on ${r.wait}`);
        emit({ step, seconds: Math.round(r.seconds), detail: parts.join(", ") });
      }
    }
    await client.end().catch(() => {});
  })();
  return async () => {
    stop.abort();
    await done;
  };
}
