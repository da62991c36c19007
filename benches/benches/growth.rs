//! Growth benchmark: the per-flow cost of a full onboarding with 1 thousand,
//! 100 thousand and 1 million tenants already in the database, through the
//! SQL functions and through the floor, and the query plans of the
//! library's queries.
//!
//! `cargo bench -p onboarding-benches --bench growth -- [--sizes 1000,100000,1000000]
//! [--flows N] [--reps R] [--max-seconds S]`
//!
//! The function path is registered with `register_cached`. One database
//! file grows from stage to stage: it is prefilled with
//! finished onboardings (one INSERT per table, the floor's statements, in
//! transactions of 50,000 with the journal and foreign keys off and the
//! plain indexes built at the end), then reopened exactly as
//! the embedded benchmark opens its files (WAL, synchronous=NORMAL, default
//! page cache) and timed on `--flows` new flows per repetition, in autocommit
//! mode and in batches of 1,000.

use std::time::{Duration, Instant};

use onboarding::{Env, SystemEnv};
use onboarding_benches::db::{self, Db, Registration, Settings, TempDir};
use onboarding_benches::floor::{Completed, Floor};
use onboarding_benches::flow::{FlowData, FunctionPath, StepTimes, STEP_NAMES};
use onboarding_benches::report::{self, f1, median, Table};
use onboarding_benches::Result;
use rusqlite::Connection;
use serde_json::{json, Value};

const PREFILL_TX: u64 = 50_000;

/// The library's queries, as written in ext/src (parameters and all), for
/// EXPLAIN QUERY PLAN. Inserts are left out: their only lookups are the
/// UNIQUE constraints' own indexes.
const QUERIES: &[(&str, &str)] = &[
    (
        "session.rs SessionHead::load (steps)",
        "SELECT id, tenant_id, current_step, status, step_started_at
         FROM onboarding_sessions WHERE id = ?1",
    ),
    (
        "session.rs Session::load (complete, get)",
        "SELECT id, tenant_id, current_step, progress_percentage, status,
                business_data, channels_data, vapi_data, kb_data, appointments_data,
                started_at, last_updated_at, step_started_at, completed_at, completion_result
         FROM onboarding_sessions WHERE id = ?1",
    ),
    (
        "step.rs email taken (business)",
        "SELECT EXISTS (SELECT 1 FROM tenants WHERE email = ?1 AND id <> ?2)",
    ),
    (
        "step.rs credit_step_time",
        "UPDATE onboarding_analytics SET step_1_duration = step_1_duration + ?1
         WHERE session_id = ?2",
    ),
    (
        "step.rs save step",
        "UPDATE onboarding_sessions
         SET business_data = ?1, current_step = ?2, progress_percentage = ?3,
             last_updated_at = ?4,
             step_started_at = CASE WHEN ?5 THEN ?4 ELSE step_started_at END
         WHERE id = ?6",
    ),
    (
        "step.rs appointments",
        "UPDATE tenants SET booking_provider = ?1, cal_com_event_type_id = ?2,
                timezone = coalesce(?3, timezone), updated_at = ?4
         WHERE id = ?5",
    ),
    (
        "complete.rs tenant",
        "UPDATE tenants SET name = ?1, company_name = ?1, email = ?2, phone = ?3, sector = ?4,
                onboarding_completed = 1, updated_at = ?5
         WHERE id = ?6
         RETURNING booking_provider, cal_com_event_type_id, timezone",
    ),
    (
        "complete.rs analytics",
        "UPDATE onboarding_analytics SET step_5_duration = step_5_duration + ?1, completed = 1,
                total_duration_seconds = ?2, completed_at = ?3
         WHERE session_id = ?4",
    ),
    (
        "complete.rs session",
        "UPDATE onboarding_sessions SET status = 'completed', current_step = 6,
                progress_percentage = 100, completed_at = ?1, last_updated_at = ?1,
                step_started_at = ?1, completion_result = ?2
         WHERE id = ?3",
    ),
    (
        "get.rs tenant",
        "SELECT id, name, company_name, email, phone, sector, booking_provider,
                cal_com_event_type_id, timezone, onboarding_completed, created_at, updated_at
         FROM tenants WHERE id = ?1",
    ),
    (
        "get.rs agent config",
        "SELECT agent_type, agent_name FROM omni_agent_configs WHERE tenant_id = ?1",
    ),
    (
        "get.rs phone mapping",
        "SELECT phone_number, is_active, status, created_at, updated_at
         FROM omni_phone_mappings WHERE tenant_id = ?1 ORDER BY id LIMIT 1",
    ),
    (
        "get.rs campaign",
        "SELECT name, campaign_type, channels, status, settings, created_at, updated_at
         FROM omnichannel_campaigns WHERE tenant_id = ?1 ORDER BY id LIMIT 1",
    ),
    (
        "get.rs crawl job",
        "SELECT id, url, status, created_at, updated_at FROM kb_crawl_jobs
         WHERE session_id = ?1",
    ),
    (
        "get.rs knowledge base",
        "SELECT (SELECT count(*) FROM kb_documents WHERE tenant_id = ?1),
                (SELECT count(*) FROM kb_chunks WHERE tenant_id = ?1)",
    ),
];

fn plans(conn: &Connection) -> Result<Vec<(&'static str, String)>> {
    QUERIES
        .iter()
        .map(|(name, sql)| {
            let mut stmt = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .map_err(|e| format!("{name}: {e}"))?;
            let n = stmt.parameter_count();
            let params: Vec<rusqlite::types::Value> =
                (0..n).map(|_| rusqlite::types::Value::Null).collect();
            let details: Vec<String> = stmt
                .query_map(rusqlite::params_from_iter(params), |r| {
                    r.get::<_, String>(3)
                })
                .and_then(|rows| rows.collect())
                .map_err(|e| format!("{name}: {e}"))?;
            Ok((*name, details.join("; ")))
        })
        .collect()
}

/// Adds finished onboardings until the database holds `target` tenants.
fn prefill(path: &std::path::Path, from: u64, target: u64, settings: Settings) -> Result<Duration> {
    let start = Instant::now();
    let conn = db::open(path, settings)?;
    // Nothing to protect while prefilling: no journal, no syncs, no foreign
    // key lookups (every row is written parent first), a big cache.
    conn.execute_batch(
        "PRAGMA journal_mode = DELETE; PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;
         PRAGMA foreign_keys = OFF; PRAGMA cache_size = -524288;",
    )
    .map_err(|e| format!("prefill pragmas: {e}"))?;
    // The plain (non-UNIQUE) indexes are built once at the end, from sorted
    // data, rather than row by row; their SQL is read back from the schema
    // so they come back exactly as sql/ defines them.
    let plain_indexes: Vec<(String, String)> = conn
        .prepare(
            "SELECT name, sql FROM sqlite_schema WHERE type = 'index' AND sql IS NOT NULL
             AND sql NOT LIKE 'CREATE UNIQUE%'",
        )
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()
        })
        .map_err(|e| format!("reading the indexes: {e}"))?;
    for (name, _) in &plain_indexes {
        conn.execute_batch(&format!("DROP INDEX {name}"))
            .map_err(|e| format!("dropping index {name}: {e}"))?;
    }
    let floor = Floor::new(&conn, false);
    let now_ms = SystemEnv.now_ms();
    let span = u128::from((target - from).max(1));
    let mut i = from;
    while i < target {
        let end = (i + PREFILL_TX).min(target);
        conn.execute_batch("BEGIN").map_err(|e| e.to_string())?;
        for k in i..end {
            let data = FlowData::new("prefill", k);
            // Ids spread evenly over the whole key space but handed out in
            // increasing order: the indexes end up as a random workload's
            // would, and are built by near-appends, which is what makes a
            // million rows fast to write.
            let high = ((u128::from(k - from) << 64) / span) as u64;
            let id = |salt: u64| format!("{high:016x}{:016x}", mix(k ^ salt.rotate_left(32)));
            floor.insert_completed(&Completed {
                data: &data,
                now_ms,
                tenant_id: format!("tenant_{}", id(1)),
                session_id: format!("onb_{}", id(2)),
                // The library's layout: the time (here the spread high
                // word's first 12 digits), then 256 random bits.
                api_key: format!("tmp_{}{}{}", &format!("{high:016x}")[..12], id(3), id(4)),
            })?;
        }
        conn.execute_batch("COMMIT").map_err(|e| e.to_string())?;
        i = end;
    }
    for (name, sql) in &plain_indexes {
        conn.execute_batch(sql)
            .map_err(|e| format!("recreating index {name}: {e}"))?;
    }
    conn.execute_batch("PRAGMA journal_mode = WAL")
        .map_err(|e| format!("back to WAL: {e}"))?;
    drop(conn);
    // Written with synchronous=OFF, the file sits in the OS cache as dirty
    // pages; flush them now, or the first checkpoint of the timed flows
    // would pay for writing the whole prefill to disk.
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| format!("syncing {}: {e}", path.display()))?;
    Ok(start.elapsed())
}

/// splitmix64: the low, unordered half of the prefill's ids.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn count_tenants(conn: &Connection) -> Result<u64> {
    conn.query_row("SELECT count(*) FROM tenants", [], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
        .map_err(|e| e.to_string())
}

/// `flows` full flows on `conn`, one at a time or 1,000 per transaction;
/// microseconds per flow and the per-step times.
fn measure(
    conn: &Connection,
    function: bool,
    batch: bool,
    data: &[FlowData],
) -> Result<(f64, StepTimes)> {
    let mut fpath = FunctionPath::new(conn);
    let mut floor = Floor::new(conn, !batch);
    let start = Instant::now();
    for chunk in data.chunks(if batch { 1000 } else { 1 }) {
        if batch {
            conn.execute_batch("BEGIN").map_err(|e| e.to_string())?;
        }
        for d in chunk {
            if function {
                fpath.run_flow(d)?;
            } else {
                floor.run_flow(d)?;
            }
        }
        if batch {
            conn.execute_batch("COMMIT").map_err(|e| e.to_string())?;
        }
    }
    let us = start.elapsed().as_secs_f64() * 1e6 / data.len().max(1) as f64;
    Ok((us, if function { fpath.times } else { floor.times }))
}

fn main() {
    if let Err(e) = run() {
        eprintln!("growth benchmark failed: {e}");
        std::process::exit(1);
    }
}

struct Point {
    tenants: u64,
    mode: &'static str,
    path: &'static str,
    us: f64,
    steps: StepTimes,
    flows: u64,
}

fn run() -> Result<()> {
    let sizes: Vec<u64> = report::arg("--sizes", "1000,100000,1000000".to_string())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let flows: u64 = report::arg("--flows", 1000);
    let reps: usize = report::arg("--reps", 3).max(1);
    let max_seconds: u64 = report::arg("--max-seconds", 400);
    let started = Instant::now();
    let settings = Settings::from_args();
    let dir = TempDir::new("growth")?;
    let path = dir.path().join("growth.db");

    let mut points: Vec<Point> = Vec::new();
    let mut prefills = Vec::new();
    let mut plan_lines = Vec::new();
    let mut have = 0u64;
    for (stage, &size) in sizes.iter().enumerate() {
        if started.elapsed() > Duration::from_secs(max_seconds) {
            eprintln!("time budget of {max_seconds} s reached; stopping before {size} tenants");
            break;
        }
        let took = prefill(&path, have, size, settings)?;
        let db = Db::open(&path, settings, Registration::Cached)?;
        let conn = &db.conn;
        have = count_tenants(conn)?;
        eprintln!(
            "prefilled {have} tenants in {:.1} s ({:.1} s so far)",
            took.as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
        prefills
            .push(json!({"tenants": have, "seconds": (took.as_secs_f64() * 10.0).round() / 10.0}));
        for (mode, batch) in [("autocommit", false), ("batch_1000", true)] {
            let mut us = [Vec::new(), Vec::new()];
            let mut steps = [StepTimes::default(), StepTimes::default()];
            for rep in 0..reps {
                // The two paths take turns going first.
                for k in [rep % 2, 1 - rep % 2] {
                    let tag = format!("g{stage}-{mode}-{k}-{rep}");
                    let data = FlowData::many(&tag, 0, flows);
                    let (u, t) = measure(conn, k == 0, batch, &data)?;
                    us[k].push(u);
                    steps[k].add(&t);
                }
            }
            for (k, pname) in ["function (register_cached)", "floor"]
                .into_iter()
                .enumerate()
            {
                points.push(Point {
                    tenants: have,
                    mode,
                    path: pname,
                    us: median(&us[k]),
                    steps: steps[k],
                    flows: flows * reps as u64,
                });
            }
        }
        // The flows just measured stay in the file: count them as tenants.
        have = count_tenants(conn)?;
        if stage + 1 == sizes.len() {
            plan_lines = plans(conn)?;
        }
    }

    let base = |mode: &str, path: &str| {
        points
            .iter()
            .find(|p| p.mode == mode && p.path == path)
            .map_or(f64::NAN, |p| p.us)
    };
    let mut table = Table::new(&[
        "tenants before",
        "mode",
        "path",
        "µs/flow",
        "flows/s",
        "vs first size",
        "create",
        "business",
        "channels",
        "vapi",
        "kb",
        "complete",
    ]);
    let mut results = Vec::new();
    for p in &points {
        let rel = p.us / base(p.mode, p.path);
        let steps = p.steps.micros_per_flow(p.flows);
        let mut row = vec![
            p.tenants.to_string(),
            p.mode.into(),
            p.path.into(),
            f1(p.us),
            format!("{:.0}", 1e6 / p.us),
            format!("{rel:.2}"),
        ];
        row.extend(steps.iter().map(|&s| f1(s)));
        table.row(row);
        let step_json: serde_json::Map<String, Value> = STEP_NAMES
            .iter()
            .zip(steps)
            .map(|(n, s)| (n.to_string(), json!((s * 10.0).round() / 10.0)))
            .collect();
        results.push(json!({
            "tenants_before": p.tenants,
            "mode": p.mode,
            "path": p.path,
            "us_per_flow": (p.us * 10.0).round() / 10.0,
            "flows_per_s": (1e6 / p.us).round(),
            "ratio_vs_first_size": (rel * 100.0).round() / 100.0,
            "step_us": step_json,
        }));
    }
    println!(
        "growth: SQLite {}, {}, {reps} repetitions of {flows} flows, medians; \
         target: function path at 1M within 1.3x of 1k",
        rusqlite::version(),
        settings.describe()
    );
    println!("{}", table.render());
    println!("query plans of the library's queries (at {have} tenants):");
    for (name, plan) in &plan_lines {
        println!("  {name:<34} {plan}");
    }
    println!("  (INSERTs look up nothing but their UNIQUE constraints' own indexes)");
    let line = json!({
        "bench": "growth",
        "machine": report::machine(),
        "sqlite": rusqlite::version(),
        "connection": settings.describe(),
        "flows_per_repetition": flows,
        "repetitions": reps,
        "statistic": "median",
        "prefill": prefills,
        "results": results,
        "plans": plan_lines.iter().map(|(n, p)| json!({"query": n, "plan": p})).collect::<Vec<_>>(),
        "seconds": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    });
    println!("{line}");
    Ok(())
}
