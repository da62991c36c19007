//! Embedded benchmark: full onboardings per second through the SQL functions
//! against the floor (the same rows by hand-written prepared statements,
//! `src/floor.rs`), measured in the same run, in autocommit mode and in
//! batches of 1,000 flows per transaction; and `onboarding_complete` alone
//! (the sync) on prepared sessions. The functions are measured twice: with
//! `register_cached` (statements kept across calls, what a host owning its
//! connection can use) and with `register` (prepared per call, what the
//! loadable extension does).
//!
//! `cargo bench -p onboarding-benches --bench embedded -- [--flows N]
//! [--batch-flows N] [--sync-flows N] [--reps R] [--max-seconds S]`
//!
//! Every repetition starts from three fresh database files (WAL,
//! synchronous=NORMAL, default page cache) in a temporary directory, one per
//! path, and the path that goes first rotates between repetitions. At the
//! end of each repetition all files must hold as many rows in every table.

use std::time::{Duration, Instant};

use onboarding_benches::db::{self, Db, Registration, Settings, TempDir};
use onboarding_benches::floor::{Floor, FloorSession};
use onboarding_benches::flow::{FlowData, FunctionPath, StepTimes, STEP_NAMES};
use onboarding_benches::report::{self, f0, f1, median, Table};
use onboarding_benches::Result;
use rusqlite::Connection;
use serde_json::{json, Value};

const BATCH: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Autocommit,
    Batch,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Autocommit => "autocommit",
            Mode::Batch => "batch_1000",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    /// create, business, channels, vapi, kb, complete.
    FullFlow,
    /// `onboarding_complete` alone on sessions prepared before the clock starts.
    Sync,
}

impl Case {
    fn as_str(self) -> &'static str {
        match self {
            Case::FullFlow => "full_flow",
            Case::Sync => "complete_only",
        }
    }
}

/// Calls `f(i)` for `i` in `0..n`: one call at a time in autocommit mode,
/// else inside BEGIN … COMMIT every [`BATCH`] calls. Returns the time taken.
fn drive(
    conn: &Connection,
    mode: Mode,
    n: usize,
    mut f: impl FnMut(usize) -> Result<()>,
) -> Result<Duration> {
    let start = Instant::now();
    let mut i = 0;
    while i < n {
        let end = match mode {
            Mode::Autocommit => i + 1,
            Mode::Batch => (i + BATCH).min(n),
        };
        if mode == Mode::Batch {
            conn.execute_batch("BEGIN").map_err(|e| e.to_string())?;
        }
        for j in i..end {
            f(j)?;
        }
        if mode == Mode::Batch {
            conn.execute_batch("COMMIT").map_err(|e| e.to_string())?;
        }
        i = end;
    }
    Ok(start.elapsed())
}

/// The three ways a flow is written, each on its own database file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Floor,
    /// SQL functions registered with `register_cached`.
    Cached,
    /// SQL functions registered with `register` (statements prepared per call).
    PerCall,
}

const PATHS: [Path; 3] = [Path::Floor, Path::Cached, Path::PerCall];

impl Path {
    fn as_str(self) -> &'static str {
        match self {
            Path::Floor => "floor",
            Path::Cached => "function (register_cached)",
            Path::PerCall => "function (register)",
        }
    }
}

/// One measurement: microseconds per flow (or per completion) on each path,
/// in the order of [`PATHS`].
struct Sample {
    us: [f64; 3],
    steps: [StepTimes; 3],
    counts: Vec<(&'static str, i64)>,
}

fn run_function(
    conn: &Connection,
    case: Case,
    mode: Mode,
    data: &[FlowData],
) -> Result<(Duration, StepTimes)> {
    let mut path = FunctionPath::new(conn);
    let elapsed = match case {
        Case::FullFlow => drive(conn, mode, data.len(), |i| path.run_flow(&data[i]))?,
        Case::Sync => {
            let mut sessions = Vec::with_capacity(data.len());
            drive(conn, Mode::Batch, data.len(), |i| {
                sessions.push(path.prepare_session(&data[i])?);
                Ok(())
            })?;
            let mut times = StepTimes::default();
            let elapsed = drive(conn, mode, data.len(), |i| {
                onboarding_benches::flow::timed(&mut times, 5, || path.complete(&sessions[i]))
            })?;
            path.times = times;
            elapsed
        }
    };
    Ok((elapsed, path.times))
}

fn run_floor(
    conn: &Connection,
    case: Case,
    mode: Mode,
    data: &[FlowData],
) -> Result<(Duration, StepTimes)> {
    let mut floor = Floor::new(conn, mode == Mode::Autocommit);
    let elapsed = match case {
        Case::FullFlow => drive(conn, mode, data.len(), |i| floor.run_flow(&data[i]))?,
        Case::Sync => {
            let mut sessions: Vec<FloorSession> = Vec::with_capacity(data.len());
            let mut prep = Floor::new(conn, false);
            drive(conn, Mode::Batch, data.len(), |i| {
                sessions.push(prep.prepare_session(&data[i])?);
                Ok(())
            })?;
            let mut times = StepTimes::default();
            let elapsed = drive(conn, mode, data.len(), |i| {
                onboarding_benches::flow::timed(&mut times, 5, || {
                    floor.complete(&mut sessions[i], &data[i])
                })
            })?;
            floor.times = times;
            elapsed
        }
    };
    Ok((elapsed, floor.times))
}

fn sample(case: Case, mode: Mode, n: usize, rep: usize, settings: Settings) -> Result<Sample> {
    let dir = TempDir::new("embedded")?;
    let dbs = [
        Db::open(
            &dir.path().join("floor.db"),
            settings,
            Registration::PerCall,
        )?,
        Db::open(
            &dir.path().join("cached.db"),
            settings,
            Registration::Cached,
        )?,
        Db::open(
            &dir.path().join("percall.db"),
            settings,
            Registration::PerCall,
        )?,
    ];
    let data = FlowData::many("bench", 0, n as u64);
    let mut us = [0.0; 3];
    let mut steps = [StepTimes::default(); 3];
    // Rotate which path runs first, so that none always gets the warmer (or
    // the more written-to) machine.
    // `--paths floor,cached,per-call`: a subset (for profiling one path).
    let only: String = report::arg("--paths", String::new());
    for k in 0..3 {
        let p = (k + rep) % 3;
        let short = ["floor", "cached", "per-call"][p];
        if !only.is_empty() && !only.split(',').any(|o| o == short) {
            continue;
        }
        let conn = &dbs[p].conn;
        // In batches the cached path runs as the server runs its batches:
        // the library's savepoints skipped (host rollback). Every call must
        // succeed here, so no call is ever marked for undoing.
        dbs[p].set_host_rollback(PATHS[p] == Path::Cached && mode == Mode::Batch);
        let (elapsed, times) = match PATHS[p] {
            Path::Floor => run_floor(conn, case, mode, &data)?,
            Path::Cached | Path::PerCall => run_function(conn, case, mode, &data)?,
        };
        dbs[p].set_host_rollback(false);
        us[p] = elapsed.as_secs_f64() * 1e6 / n as f64;
        steps[p] = times;
    }
    let counts = if only.is_empty() {
        db::check_same_counts(&dbs[1].conn, &dbs[0].conn)?;
        let counts = db::check_same_counts(&dbs[2].conn, &dbs[0].conn)?;
        let tenants = counts[0].1;
        if tenants != n as i64 {
            return Err(format!("expected {n} tenants, found {tenants}"));
        }
        counts
    } else {
        Vec::new()
    };
    debug_assert_eq!(dbs[1].registration(), Registration::Cached);
    Ok(Sample { us, steps, counts })
}

fn steps_json(t: &StepTimes, n: u64, case: Case) -> Value {
    let us = t.micros_per_flow(n);
    let mut m = serde_json::Map::new();
    for (i, name) in STEP_NAMES.iter().enumerate() {
        if case == Case::FullFlow || i == 5 {
            m.insert(name.to_string(), json!((us[i] * 10.0).round() / 10.0));
        }
    }
    Value::Object(m)
}

fn main() {
    if let Err(e) = run() {
        eprintln!("embedded benchmark failed: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let flows: usize = report::arg("--flows", 1000);
    let batch_flows: usize = report::arg("--batch-flows", 3000);
    let sync_flows: usize = report::arg("--sync-flows", 1000);
    let reps: usize = report::arg("--reps", 5).max(1);
    let max_seconds: u64 = report::arg("--max-seconds", 240);
    let budget = Duration::from_secs(max_seconds);
    let settings = Settings::from_args();
    let started = Instant::now();

    let cases = [
        (Case::FullFlow, Mode::Autocommit, flows),
        (Case::FullFlow, Mode::Batch, batch_flows),
        (Case::Sync, Mode::Autocommit, sync_flows),
        (Case::Sync, Mode::Batch, sync_flows.max(BATCH)),
    ];
    // `--cases full_flow/batch_1000,complete_only/autocommit`: a subset
    // (for profiling one case).
    let only: String = report::arg("--cases", String::new());
    let cases: Vec<(Case, Mode, usize)> = cases
        .into_iter()
        .filter(|(c, m, _)| {
            only.is_empty()
                || only
                    .split(',')
                    .any(|o| o == format!("{}/{}", c.as_str(), m.as_str()))
        })
        .collect();
    let mut samples: Vec<Vec<Sample>> = cases.iter().map(|_| Vec::new()).collect();
    let mut reps_done = 0;
    for rep in 0..reps {
        // Bounded in time too: stop adding repetitions past the budget.
        if rep > 0 && started.elapsed() > budget {
            eprintln!("time budget of {max_seconds} s reached after {rep} repetitions");
            break;
        }
        for (k, &(case, mode, n)) in cases.iter().enumerate() {
            samples[k].push(sample(case, mode, n, rep, settings)?);
        }
        reps_done += 1;
        eprintln!(
            "repetition {} of {reps} done ({:.1} s)",
            rep + 1,
            started.elapsed().as_secs_f64()
        );
    }

    let mut table = Table::new(&[
        "case",
        "mode",
        "n",
        "floor/s",
        "cached/s",
        "per-call/s",
        "floor µs",
        "cached µs",
        "per-call µs",
        "cached/floor",
        "min..max",
        "per-call/floor",
    ]);
    let mut steps = Table::new(&[
        "case / mode / path",
        "create",
        "business",
        "channels",
        "vapi",
        "kb",
        "complete",
    ]);
    let mut results = Vec::new();
    let round = |x: f64, digits: i32| (x * 10f64.powi(digits)).round() / 10f64.powi(digits);
    for (k, &(case, mode, n)) in cases.iter().enumerate() {
        let s = &samples[k];
        let med: Vec<f64> = (0..3)
            .map(|p| median(&s.iter().map(|x| x.us[p]).collect::<Vec<_>>()))
            .collect();
        let ratios: Vec<f64> = s.iter().map(|x| x.us[1] / x.us[0]).collect();
        let (rmin, rmax) = ratios
            .iter()
            .fold((f64::MAX, 0f64), |(a, b), &r| (a.min(r), b.max(r)));
        let (ratio, ratio_per_call) = (med[1] / med[0], med[2] / med[0]);
        table.row(vec![
            case.as_str().into(),
            mode.as_str().into(),
            n.to_string(),
            f0(1e6 / med[0]),
            f0(1e6 / med[1]),
            f0(1e6 / med[2]),
            f1(med[0]),
            f1(med[1]),
            f1(med[2]),
            format!("{ratio:.2}"),
            format!("{rmin:.2}..{rmax:.2}"),
            format!("{ratio_per_call:.2}"),
        ]);
        let total = (n * s.len()) as u64;
        let mut per_path = serde_json::Map::new();
        for (p, path) in PATHS.iter().enumerate() {
            let mut t = StepTimes::default();
            for x in s {
                t.add(&x.steps[p]);
            }
            let us = t.micros_per_flow(total);
            let mut row = vec![format!(
                "{} / {} / {}",
                case.as_str(),
                mode.as_str(),
                path.as_str()
            )];
            row.extend((0..6).map(|i| {
                if case == Case::FullFlow || i == 5 {
                    f1(us[i])
                } else {
                    "-".into()
                }
            }));
            steps.row(row);
            per_path.insert(
                path.as_str().to_string(),
                json!({
                    "per_s": (1e6 / med[p]).round(),
                    "us": round(med[p], 1),
                    "step_us": steps_json(&t, total, case),
                }),
            );
        }
        results.push(json!({
            "case": case.as_str(),
            "mode": mode.as_str(),
            "n": n,
            "paths": per_path,
            "ratio_cached_over_floor": round(ratio, 2),
            "ratio_cached_over_floor_min": round(rmin, 2),
            "ratio_cached_over_floor_max": round(rmax, 2),
            "ratio_per_call_over_floor": round(ratio_per_call, 2),
        }));
    }
    let counts: serde_json::Map<String, Value> = samples
        .first()
        .and_then(|s| s.last())
        .map(|s| {
            s.counts
                .iter()
                .map(|(t, n)| (t.to_string(), json!(n)))
                .collect()
        })
        .unwrap_or_default();

    println!(
        "embedded: SQLite {}, {}, {reps_done} repetitions, medians; \
         ratios = function µs / floor µs (target <= 1.5)",
        rusqlite::version(),
        settings.describe()
    );
    println!("{}", table.render());
    println!("µs per call, mean over all repetitions:");
    println!("{}", steps.render());
    println!(
        "row counts per table (equal on all paths; first case, last repetition): {}",
        counts
            .iter()
            .map(|(t, n)| format!("{t}={n}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let line = json!({
        "bench": "embedded",
        "machine": report::machine(),
        "sqlite": rusqlite::version(),
        "connection": settings.describe(),
        "repetitions": reps_done,
        "statistic": "median",
        "results": results,
        "row_counts_checked_equal": counts,
        "seconds": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    });
    println!("{line}");
    Ok(())
}
