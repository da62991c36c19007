//! The session row as the functions read it, the steps it keeps (the one
//! [`Step`] type) and the progress they reach.

use std::borrow::Cow;

use rusqlite::{Connection, OptionalExtension, Params};
use serde_json::Value;

use crate::error::{quote, Error, Result};
use crate::sql;

/// A point of the wizard: a `current_step` and its `progress_percentage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub step: i64,
    pub percentage: i64,
}

impl Progress {
    /// A new session: on step 1 (business), nothing saved.
    pub const CREATED: Progress = Progress {
        step: 1,
        percentage: 0,
    };
    /// A completed session: step 6 of 6.
    pub const COMPLETED: Progress = Progress {
        step: 6,
        percentage: 100,
    };

    /// The progress of a session on `current_step`: the furthest point at
    /// or before it (steps between two points share the earlier one's).
    pub fn at(current_step: i64) -> Progress {
        [Progress::CREATED]
            .into_iter()
            .chain(Step::ALL.iter().filter_map(|s| s.reaches()))
            .chain([Progress::COMPLETED])
            .filter(|p| p.step <= current_step)
            .max_by_key(|p| p.step)
            .unwrap_or(Progress::CREATED)
    }
}

/// The steps the wizard saves: the one list of them. Everything about a
/// step that is not a validation rule lives here: its name, the progress
/// saving it reaches, and the session column that keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Business,
    Channels,
    Vapi,
    Kb,
    Appointments,
}

/// The facts of one step; see [`Step::facts`].
struct Facts {
    name: &'static str,
    /// The call as a keyed answer names it (`replies.rs`): a key kept for
    /// one step is not the answer of another.
    function: &'static str,
    /// `None`: saving the step does not move progress.
    reaches: Option<Progress>,
    /// The UPDATE that saves the step's data in its column, see [`save_sql`].
    save_sql: RowUpdate,
}

/// A [`RowUpdate`] of `onboarding_sessions` from its `SET` text and the
/// numbers of its rowid and id parameters: the two `WHERE` clauses, written
/// once for every such update.
macro_rules! row_update {
    ($set:expr, $rowid:literal, $id:literal) => {
        $crate::session::RowUpdate {
            by_rowid: concat!(
                "UPDATE main.onboarding_sessions SET ",
                $set,
                " WHERE rowid = ",
                $rowid,
                " AND id = ",
                $id
            ),
            by_id: concat!(
                "UPDATE main.onboarding_sessions SET ",
                $set,
                " WHERE id = ",
                $id
            ),
        }
    };
}
pub(crate) use row_update;

/// The UPDATEs that save a step's data in `$column` (`?1`) and the progress
/// (`?2`, `?3`) at `?4`, restarting the step clock when `?5`, for the
/// session whose rowid is `?6` and id `?7` (see [`RowUpdate`]). One literal
/// per column: the column name never comes from caller text, and the hot
/// path formats nothing.
macro_rules! save_sql {
    ($column:literal) => {
        row_update!(
            concat!(
                $column,
                " = ?1, current_step = ?2, progress_percentage = ?3, last_updated_at = ?4,
                 step_started_at = CASE WHEN ?5 THEN ?4 ELSE step_started_at END"
            ),
            "?6",
            "?7"
        )
    };
}

/// An UPDATE of the session row a call has read, in two forms. The read
/// returned the row's rowid, and `by_rowid` finds the row by it, without a
/// second search of the id index, checking its id as well. A host's trigger
/// fired by the call's own writes in between may have deleted or replaced
/// the row (`REPLACE` gives it a new rowid, and a freed rowid can go to
/// another session): then `by_rowid` changes nothing and `by_id` runs, the
/// statement as it would be without the rowid. Both take the same
/// parameters; `by_id` leaves out the rowid's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowUpdate {
    pub by_rowid: &'static str,
    pub by_id: &'static str,
}

impl RowUpdate {
    /// Runs the update with `params`; answers the rows changed.
    pub fn run<P: Params + Copy>(self, conn: &Connection, params: P) -> Result<usize> {
        match sql::execute(conn, self.by_rowid, params)? {
            0 => Ok(sql::execute(conn, self.by_id, params)?),
            changed => Ok(changed),
        }
    }
}

const fn reaches(step: i64, percentage: i64) -> Option<Progress> {
    Some(Progress { step, percentage })
}

impl Step {
    /// Every step, in the wizard's order.
    pub const ALL: [Step; 5] = [
        Step::Business,
        Step::Channels,
        Step::Vapi,
        Step::Kb,
        Step::Appointments,
    ];

    const fn facts(self) -> Facts {
        match self {
            Step::Business => Facts {
                name: "business",
                function: "onboarding_step('business')",
                reaches: reaches(2, 33),
                save_sql: save_sql!("business_data"),
            },
            Step::Channels => Facts {
                name: "channels",
                function: "onboarding_step('channels')",
                reaches: reaches(3, 50),
                save_sql: save_sql!("channels_data"),
            },
            Step::Vapi => Facts {
                name: "vapi",
                function: "onboarding_step('vapi')",
                reaches: reaches(4, 66),
                save_sql: save_sql!("vapi_data"),
            },
            Step::Kb => Facts {
                name: "kb",
                function: "onboarding_step('kb')",
                reaches: reaches(5, 83),
                save_sql: save_sql!("kb_data"),
            },
            Step::Appointments => Facts {
                name: "appointments",
                function: "onboarding_step('appointments')",
                reaches: None,
                save_sql: save_sql!("appointments_data"),
            },
        }
    }

    /// The step named `name`, or the error listing the steps.
    pub fn parse(name: &str) -> Result<Step> {
        Step::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| {
                Error::invalid_field(format!(
                    "step {} is not a step (expected one of {})",
                    quote(name),
                    Step::ALL.map(Step::name).join(", ")
                ))
            })
    }

    /// The name callers use: `business`.
    pub const fn name(self) -> &'static str {
        self.facts().name
    }

    /// The call's name in a kept answer: `onboarding_step('business')`.
    pub const fn function(self) -> &'static str {
        self.facts().function
    }

    /// The progress saving this step reaches; `None` when it moves nothing.
    pub const fn reaches(self) -> Option<Progress> {
        self.facts().reaches
    }

    /// The statement that saves the step's data and the progress.
    pub const fn save_sql(self) -> RowUpdate {
        self.facts().save_sql
    }
}

/// One row of `onboarding_sessions`.
#[derive(Debug)]
pub struct Session<'a> {
    /// The row's rowid, for the call's own later writes to it.
    pub rowid: i64,
    /// The id the caller gave (see [`SessionHead::id`]).
    pub id: &'a str,
    pub tenant_id: String,
    pub current_step: i64,
    pub progress_percentage: i64,
    pub status: Cow<'static, str>,
    pub business_data: Option<String>,
    pub channels_data: Option<String>,
    pub vapi_data: Option<String>,
    pub kb_data: Option<String>,
    pub appointments_data: Option<String>,
    pub started_at: String,
    pub last_updated_at: String,
    pub step_started_at: String,
    pub completed_at: Option<String>,
    pub completion_result: Option<String>,
}

impl<'a> Session<'a> {
    /// Reads session `id`, or answers `not_found`.
    pub fn load(conn: &Connection, id: &'a str) -> Result<Session<'a>> {
        sql::query_row(
            conn,
            "SELECT rowid, tenant_id, current_step, progress_percentage, status,
                    business_data, channels_data, vapi_data, kb_data, appointments_data,
                    started_at, last_updated_at, step_started_at, completed_at, completion_result
             FROM main.onboarding_sessions WHERE id = ?1",
            [id],
            |r| {
                Ok(Session {
                    rowid: r.get(0)?,
                    id,
                    tenant_id: r.get(1)?,
                    current_step: r.get(2)?,
                    progress_percentage: r.get(3)?,
                    status: known_status(r.get_ref(4)?.as_str()?),
                    business_data: r.get(5)?,
                    channels_data: r.get(6)?,
                    vapi_data: r.get(7)?,
                    kb_data: r.get(8)?,
                    appointments_data: r.get(9)?,
                    started_at: r.get(10)?,
                    last_updated_at: r.get(11)?,
                    step_started_at: r.get(12)?,
                    completed_at: r.get(13)?,
                    completion_result: r.get(14)?,
                })
            },
        )
        .optional()?
        .ok_or_else(|| Error::not_found_session(id))
    }

    /// Refuses changes to a session that is no longer in progress.
    pub fn ensure_writable(&self) -> Result<()> {
        ensure_in_progress(self.id, &self.status)
    }

    /// The stored JSON text of `step`, `None` until the step is saved.
    pub fn data(&self, step: Step) -> Option<&str> {
        match step {
            Step::Business => self.business_data.as_deref(),
            Step::Channels => self.channels_data.as_deref(),
            Step::Vapi => self.vapi_data.as_deref(),
            Step::Kb => self.kb_data.as_deref(),
            Step::Appointments => self.appointments_data.as_deref(),
        }
    }

    /// The channels chosen, or the front end's default `["phone"]`.
    pub fn channels(&self) -> Result<Vec<String>> {
        let Some(text) = &self.channels_data else {
            return Ok(vec!["phone".to_string()]);
        };
        // Read into its one field, not a map: completion reads it every time.
        #[derive(serde::Deserialize)]
        struct Stored {
            channels: Vec<String>,
        }
        serde_json::from_str::<Stored>(text)
            .map(|stored| stored.channels)
            .map_err(|_| Error::internal("stored channels_data has no channels array"))
    }
}

/// The part of a session row that saving a step needs: a step reads no
/// other step's data, so it does not load (or copy) it.
#[derive(Debug)]
pub struct SessionHead<'a> {
    /// The row's rowid, for the step's own later writes to it.
    pub rowid: i64,
    /// The id the caller gave: the row's equals it byte for byte (it was
    /// found by `id = ?1`, in the column's binary collation), so it is not
    /// read back.
    pub id: &'a str,
    pub tenant_id: String,
    pub current_step: i64,
    pub status: Cow<'static, str>,
    pub step_started_at: String,
}

impl<'a> SessionHead<'a> {
    /// Reads the head of session `id`, or answers `not_found`.
    pub fn load(conn: &Connection, id: &'a str) -> Result<SessionHead<'a>> {
        sql::query_row(
            conn,
            "SELECT rowid, tenant_id, current_step, status, step_started_at
             FROM main.onboarding_sessions WHERE id = ?1",
            [id],
            |r| {
                Ok(SessionHead {
                    rowid: r.get(0)?,
                    id,
                    tenant_id: r.get(1)?,
                    current_step: r.get(2)?,
                    status: known_status(r.get_ref(3)?.as_str()?),
                    step_started_at: r.get(4)?,
                })
            },
        )
        .optional()?
        .ok_or_else(|| Error::not_found_session(id))
    }

    /// Refuses changes to a session that is no longer in progress.
    pub fn ensure_writable(&self) -> Result<()> {
        ensure_in_progress(self.id, &self.status)
    }
}

/// A stored status: one of the three the schema's CHECK allows without a
/// copy (a step reads it on every call), any other (a schema edited by
/// hand) as it is stored.
fn known_status(stored: &str) -> Cow<'static, str> {
    match stored {
        "in_progress" => Cow::Borrowed("in_progress"),
        "completed" => Cow::Borrowed("completed"),
        "abandoned" => Cow::Borrowed("abandoned"),
        other => Cow::Owned(other.to_string()),
    }
}

fn ensure_in_progress(id: &str, status: &str) -> Result<()> {
    match status {
        "in_progress" => Ok(()),
        status => Err(Error::conflict(format!(
            "session {} is {status}; its steps can no longer be changed",
            quote(id)
        ))),
    }
}

/// A step's stored JSON, parsed; `Value::Null` when the step was not saved.
pub fn stored_json(text: Option<&str>) -> Result<Value> {
    match text {
        None => Ok(Value::Null),
        Some(t) => Ok(serde_json::from_str(t)?),
    }
}

/// A string field of a stored (already validated) step.
pub fn stored_str<'v>(step: &'v Value, field: &str) -> Result<&'v str> {
    step[field]
        .as_str()
        .ok_or_else(|| Error::internal(format!("stored step data lacks {field}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The channels completion reads: the default without the step, the
    /// stored array, and an internal error for stored data of another shape
    /// (only a row the library did not write holds one).
    #[test]
    fn stored_channels_are_read_from_their_one_array() {
        let with = |channels_data: Option<&str>| {
            Session {
                rowid: 1,
                id: "onb_1",
                tenant_id: "tenant_1".to_string(),
                current_step: 3,
                progress_percentage: 50,
                status: Cow::Borrowed("in_progress"),
                business_data: None,
                channels_data: channels_data.map(str::to_string),
                vapi_data: None,
                kb_data: None,
                appointments_data: None,
                started_at: String::new(),
                last_updated_at: String::new(),
                step_started_at: String::new(),
                completed_at: None,
                completion_result: None,
            }
            .channels()
        };
        assert_eq!(with(None), Ok(vec!["phone".to_string()]));
        assert_eq!(
            with(Some(r#"{"channels":["phone","sms"]}"#)),
            Ok(vec!["phone".to_string(), "sms".to_string()])
        );
        let refused = Err(Error::internal(
            "stored channels_data has no channels array",
        ));
        for stored in [
            r#"{"channels":"sms"}"#,
            r#"{"chanels":[]}"#,
            r#"{"channels":[1]}"#,
            "[]",
        ] {
            assert_eq!(with(Some(stored)), refused, "{stored}");
        }
    }

    #[test]
    fn progress_is_the_furthest_point_reached() {
        let percentages: Vec<i64> = (0..=7).map(|s| Progress::at(s).percentage).collect();
        assert_eq!(percentages, [0, 0, 33, 50, 66, 83, 100, 100]);
        assert_eq!(
            Progress::at(4),
            Progress {
                step: 4,
                percentage: 66
            }
        );
    }

    #[test]
    fn steps_parse_by_name_and_save_their_own_column() {
        assert_eq!(Step::parse("vapi"), Ok(Step::Vapi));
        assert_eq!(
            Step::parse("welcome"),
            Err(Error::invalid_field(
                "step 'welcome' is not a step (expected one of business, channels, vapi, kb, appointments)"
            ))
        );
        let columns: Vec<&str> = Step::ALL
            .map(|s| s.save_sql().by_id)
            .iter()
            .map(|sql| sql.split(' ').nth(3).unwrap_or_default())
            .collect();
        assert_eq!(
            columns,
            [
                "business_data",
                "channels_data",
                "vapi_data",
                "kb_data",
                "appointments_data"
            ]
        );
    }
}
