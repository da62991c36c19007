//! Phone benchmark: the business step's cost when its numbers come from one
//! region, against numbers of thirty regions in turn, measured in the same
//! run. Validating a number compiles its region's patterns on first use;
//! this shows whether later numbers pay that again (they did, 3.5 ms a
//! number, while the `phonenumber` crate's cache kept only 100 patterns).
//!
//! `cargo bench -p onboarding-benches --bench phone -- [--calls N] [--reps R]`
//!
//! Each repetition opens a fresh database file, creates one session and
//! saves its business step `--calls` times in one transaction for each
//! case, the case that goes first alternating between repetitions. Every
//! answer must be a success: all numbers are valid. Prints a table, then
//! one JSON line of the results.

use std::time::Instant;

use onboarding_benches::db::{Db, Registration, Settings, TempDir};
use onboarding_benches::flow::FunctionPath;
use onboarding_benches::report::{self, f1, median, Table};
use onboarding_benches::Result;
use serde_json::json;

/// Mobile numbers of thirty regions, in E.164.
const REGIONS: [&str; 30] = [
    "+33612345678",
    "+4915123456789",
    "+447911123456",
    "+12025550123",
    "+393123456789",
    "+34612345678",
    "+31612345678",
    "+32470123456",
    "+41781234567",
    "+43664123456",
    "+351912345678",
    "+48512345678",
    "+46701234567",
    "+4791234567",
    "+4520123456",
    "+358401234567",
    "+353851234567",
    "+306912345678",
    "+420601123456",
    "+36201234567",
    "+40712345678",
    "+819012345678",
    "+61412345678",
    "+5511912345678",
    "+525512345678",
    "+919812345678",
    "+8613812345678",
    "+821012345678",
    "+27821234567",
    "+212612345678",
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Case {
    /// Belgian numbers, a different one each call. Not French ones: a
    /// metropolitan French number is read by its digits, without the
    /// parser and its patterns (`validate::french_by_its_digits`), and the
    /// case compares the parser's cost over one region and over thirty.
    OneRegion,
    /// [`REGIONS`] in turn.
    ThirtyRegions,
}

impl Case {
    fn as_str(self) -> &'static str {
        match self {
            Case::OneRegion => "one region (Belgium)",
            Case::ThirtyRegions => "30 regions in turn",
        }
    }

    fn phone(self, i: usize) -> String {
        match self {
            Case::OneRegion => format!("+32470{:06}", i % 1_000_000),
            Case::ThirtyRegions => REGIONS[i % REGIONS.len()].to_string(),
        }
    }
}

/// µs per business step for `calls` steps of `case` on one session.
fn sample(db: &Db, case: Case, calls: usize) -> Result<f64> {
    let path = FunctionPath::new(&db.conn);
    let session = path.create()?;
    let payloads: Vec<String> = (0..calls)
        .map(|i| {
            serde_json::json!({
                "company_name": "Cabinet Martin",
                "industry": "Immobilier",
                "phone": case.phone(i),
                "email": "contact@cabinet-martin.fr",
            })
            .to_string()
        })
        .collect();
    db.conn
        .execute_batch("BEGIN IMMEDIATE")
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    for payload in &payloads {
        path.step(&session, "business", payload)?;
    }
    let us = start.elapsed().as_secs_f64() * 1e6 / calls.max(1) as f64;
    db.conn.execute_batch("COMMIT").map_err(|e| e.to_string())?;
    Ok(us)
}

fn main() {
    if let Err(e) = run() {
        eprintln!("phone benchmark failed: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let calls: usize = report::arg("--calls", 600).max(1);
    let reps: usize = report::arg("--reps", 5).max(1);
    let settings = Settings::from_args();
    let cases = [Case::OneRegion, Case::ThirtyRegions];
    let mut us: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for rep in 0..reps {
        let dir = TempDir::new("phone")?;
        let db = Db::open(&dir.path().join("phone.db"), settings, Registration::Cached)?;
        for k in 0..cases.len() {
            let k = (k + rep) % cases.len();
            us[k].push(sample(&db, cases[k], calls)?);
        }
        eprintln!("repetition {} of {reps} done", rep + 1);
    }
    println!(
        "phone: {calls} business steps per case and repetition, {reps} repetitions, medians; {}; {}",
        settings.describe(),
        report::machine()
    );
    let base = median(&us[0]);
    let mut table = Table::new(&["case", "µs per step", "min..max", "ratio to one region"]);
    let mut results = Vec::new();
    for (k, case) in cases.iter().enumerate() {
        let m = median(&us[k]);
        let (lo, hi) = us[k]
            .iter()
            .fold((f64::MAX, 0f64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        let ratio = m / base;
        table.row(vec![
            case.as_str().into(),
            f1(m),
            format!("{}..{}", f1(lo), f1(hi)),
            format!("{ratio:.2}"),
        ]);
        results.push(json!({
            "case": case.as_str(),
            "us_per_step": m,
            "us_min": lo,
            "us_max": hi,
            "ratio_to_one_region": ratio,
        }));
    }
    print!("{}", table.render());
    println!(
        "{}",
        json!({
            "bench": "phone",
            "machine": report::machine(),
            "calls": calls,
            "reps": reps,
            "cases": results,
        })
    );
    Ok(())
}
