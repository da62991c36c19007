//! Loadable-extension benchmark: full onboardings through the built
//! `libonboarding.so` (what the `sqlite3` shell, Python, Node or Go call),
//! against the same library registered to prepare its statements on every
//! call (what the `.so` did before it kept them), measured in the same run.
//!
//! `cargo bench -p onboarding-benches --bench loadable -- [--flows N] [--reps R] [--so PATH]`
//!
//! Needs `dist/libonboarding.so` (`make loadable`; `make bench` builds it).
//! Each repetition opens two fresh database files, one per path, and runs
//! `--flows` full flows (six calls each) in one transaction, then a fifth
//! of them with each call committing on its own, on each path, the path
//! that goes first alternating between repetitions. Every answer must be a
//! success, and both files must end with the same number of rows in every
//! table. Prints medians, then one JSON line.

use std::path::PathBuf;
use std::time::Instant;

use onboarding_benches::db::{self, Settings, TempDir};
use onboarding_benches::flow::{FlowData, FunctionPath};
use onboarding_benches::report::{self, f1, median, Table};
use onboarding_benches::Result;
use rusqlite::Connection;
use serde_json::json;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    /// The built `.so`, loaded into the connection.
    Extension,
    /// `onboarding::register`: each call prepares its statements.
    PerCall,
}

impl Path {
    fn as_str(self) -> &'static str {
        match self {
            Path::Extension => "libonboarding.so",
            Path::PerCall => "prepared per call",
        }
    }
}

/// µs per flow of `flows` full flows on `conn`, in one transaction or each
/// call committing on its own; `tag` and `start` keep emails unique.
fn sample(conn: &Connection, batch: bool, tag: &str, start: u64, flows: u64) -> Result<f64> {
    let data = FlowData::many(tag, start, flows);
    let mut path = FunctionPath::new(conn);
    let begin = Instant::now();
    if batch {
        conn.execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| e.to_string())?;
    }
    for flow in &data {
        path.run_flow(flow)?;
    }
    if batch {
        conn.execute_batch("COMMIT").map_err(|e| e.to_string())?;
    }
    Ok(begin.elapsed().as_secs_f64() * 1e6 / flows.max(1) as f64)
}

fn main() {
    if let Err(e) = run() {
        eprintln!("loadable benchmark failed: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let flows: u64 = report::arg("--flows", 1000).max(5);
    let reps: usize = report::arg("--reps", 5).max(1);
    let default_so = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dist/libonboarding.so");
    let so = PathBuf::from(report::arg(
        "--so",
        default_so.to_string_lossy().into_owned(),
    ));
    if !so.exists() {
        return Err(format!("{} is missing: run `make loadable`", so.display()));
    }
    let settings = Settings::from_args();
    let paths = [Path::Extension, Path::PerCall];
    let modes = [
        (true, "batch_1000", flows),
        (false, "autocommit", flows / 5),
    ];
    // [mode][path] -> samples
    let mut us = vec![vec![Vec::new(); paths.len()]; modes.len()];
    for rep in 0..reps {
        let dir = TempDir::new("loadable")?;
        let conns = [
            db::open_with_extension(&dir.path().join("so.db"), settings, &so)?,
            db::open(&dir.path().join("per-call.db"), settings)?,
        ];
        for (m, &(batch, _, n)) in modes.iter().enumerate() {
            for k in 0..paths.len() {
                let k = (k + rep) % paths.len();
                let tag = format!("{}{rep}", if batch { "batch" } else { "auto" });
                us[m][k].push(sample(&conns[k], batch, &tag, 0, n)?);
            }
        }
        db::check_same_counts(&conns[0], &conns[1])?;
        eprintln!("repetition {} of {reps} done", rep + 1);
    }
    println!(
        "loadable: {flows} full flows in one transaction, then {} each call committing, per path \
         and repetition; {reps} repetitions, medians; {}; {}",
        flows / 5,
        settings.describe(),
        report::machine()
    );
    let mut table = Table::new(&["mode", "path", "µs per flow", "min..max", "per call / .so"]);
    let mut results = Vec::new();
    for (m, &(_, name, _)) in modes.iter().enumerate() {
        let so_median = median(&us[m][0]);
        for (k, path) in paths.iter().enumerate() {
            let med = median(&us[m][k]);
            let (lo, hi) = us[m][k]
                .iter()
                .fold((f64::MAX, 0f64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            table.row(vec![
                name.into(),
                path.as_str().into(),
                f1(med),
                format!("{}..{}", f1(lo), f1(hi)),
                format!("{:.2}", med / so_median),
            ]);
            results.push(json!({
                "mode": name,
                "path": path.as_str(),
                "us_per_flow": med,
                "us_min": lo,
                "us_max": hi,
                "over_extension": med / so_median,
            }));
        }
    }
    print!("{}", table.render());
    println!(
        "{}",
        json!({
            "bench": "loadable",
            "machine": report::machine(),
            "flows": flows,
            "reps": reps,
            "results": results,
        })
    );
    Ok(())
}
