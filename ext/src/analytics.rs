//! Step-time credit in `onboarding_analytics`: the time a session spent on
//! the step it leaves goes to that step's `step_N_duration`.
//!
//! A step's column is picked by its number, never from caller text, and each
//! column has its own literal statement, so the hot path formats nothing and
//! the statement cache keeps one entry per column.

use rusqlite::Connection;

use crate::env::parse_iso8601;
use crate::error::{quote, Error, Result};
use crate::sql;

/// The two statements that credit one step's column.
struct StepSql {
    /// Adds `?1` seconds for session `?2`.
    credit: &'static str,
    /// The same, and marks the session's analytics completed: total `?3`
    /// seconds, at `?4`.
    complete: &'static str,
}

macro_rules! step_sql {
    ($column:literal) => {
        StepSql {
            credit: concat!(
                "UPDATE main.onboarding_analytics SET ",
                $column,
                " = ",
                $column,
                " + ?1 WHERE session_id = ?2"
            ),
            complete: concat!(
                "UPDATE main.onboarding_analytics SET ",
                $column,
                " = ",
                $column,
                " + ?1, completed = 1, total_duration_seconds = ?3, completed_at = ?4
                 WHERE session_id = ?2"
            ),
        }
    };
}

/// The statements of step `step` (1 to 6; out of range is clamped).
fn step_sql(step: i64) -> StepSql {
    match step {
        ..=1 => step_sql!("step_1_duration"),
        2 => step_sql!("step_2_duration"),
        3 => step_sql!("step_3_duration"),
        4 => step_sql!("step_4_duration"),
        5 => step_sql!("step_5_duration"),
        _ => step_sql!("step_6_duration"),
    }
}

/// Where a session stands: the step it is on, and since when.
pub struct OnStep<'a> {
    pub session_id: &'a str,
    /// `current_step`, 1 to 6.
    pub step: i64,
    /// `step_started_at`, as stored.
    pub since: &'a str,
}

/// Credits the time from `on.since` to `now_ms` to step `on.step`.
pub fn credit_step(conn: &Connection, on: &OnStep<'_>, now_ms: i64) -> Result<()> {
    let seconds = seconds_between(on.since, now_ms)?;
    sql::execute(conn, step_sql(on.step).credit, (seconds, on.session_id))?;
    Ok(())
}

/// Credits the last step's time, as [`credit_step`], and records the
/// completion: `total_seconds` in all, at `now`.
pub fn credit_last_step(
    conn: &Connection,
    on: &OnStep<'_>,
    now_ms: i64,
    total_seconds: i64,
    now: &str,
) -> Result<()> {
    let seconds = seconds_between(on.since, now_ms)?;
    sql::execute(
        conn,
        step_sql(on.step).complete,
        (seconds, on.session_id, total_seconds, now),
    )?;
    Ok(())
}

/// Seconds, with millisecond precision, from a stored timestamp to `to_ms`
/// (never negative: a clock set back credits nothing).
pub fn seconds_between(from: &str, to_ms: i64) -> Result<f64> {
    let from_ms = parse_iso8601(from).ok_or_else(|| {
        Error::internal(format!("stored timestamp {} is unreadable", quote(from)))
    })?;
    Ok((to_ms - from_ms).max(0) as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_step_has_its_own_column_and_out_of_range_steps_are_clamped() {
        assert_eq!(
            step_sql(3).credit,
            "UPDATE main.onboarding_analytics SET step_3_duration = step_3_duration + ?1 \
             WHERE session_id = ?2"
        );
        assert_eq!(step_sql(0).credit, step_sql(1).credit);
        assert_eq!(step_sql(9).complete, step_sql(6).complete);
        assert!(step_sql(6).complete.starts_with(
            "UPDATE main.onboarding_analytics SET step_6_duration = step_6_duration + ?1, completed = 1,"
        ));
    }

    #[test]
    fn seconds_between_keeps_milliseconds_and_never_goes_negative() {
        // 2026-11-24T10:00:00.000Z is 1_795_514_400_000.
        let from = "2026-11-24T10:00:00.000Z";
        assert_eq!(seconds_between(from, 1_795_514_461_250), Ok(61.25));
        assert_eq!(seconds_between(from, 1_795_514_399_000), Ok(0.0));
        assert_eq!(
            seconds_between("yesterday", 0),
            Err(Error::internal(
                "stored timestamp 'yesterday' is unreadable"
            ))
        );
    }
}
