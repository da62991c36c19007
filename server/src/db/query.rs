//! [`Query`]: the one SQL statement each route runs, and what it answers.

use rusqlite::{Connection, ErrorCode};

/// One SQL call: each route is exactly one of these.
#[derive(Debug)]
pub enum Query {
    /// `SELECT onboarding_create(?1, ?2, ?3)`: the client's payload (`None`
    /// binds NULL, read as `{}`), its address and its raw `User-Agent`
    /// (empty when it sent none), which the library cleans and which
    /// replace anything the payload claims.
    Create {
        payload: Option<String>,
        ip_address: String,
        user_agent: String,
    },
    /// `SELECT onboarding_step(?1, ?2, ?3)`; `None` payload binds NULL.
    Step {
        session_id: String,
        step: &'static str,
        payload: Option<String>,
    },
    /// `SELECT onboarding_complete(?1, ?2)`.
    Complete {
        session_id: String,
        payload: Option<String>,
    },
    /// `SELECT onboarding_get(?1)`.
    Get { session_id: String },
    /// `SELECT onboarding_agent_types()`.
    AgentTypes,
    /// `SELECT onboarding_voices()`.
    Voices,
    /// The database answers a query: schema version and engine version.
    Health,
    /// `SELECT onboarding_kb_get(?1)`; `None` binds NULL (the original's
    /// route without `?session_id=`), which the library refuses.
    KbGet { session_id: Option<String> },
    /// `SELECT onboarding_kb_search(?1)`.
    KbSearch { payload: String },
    /// A crawler worker's call: `SELECT onboarding_kb_<function>(?1)`.
    Kb {
        function: KbFunction,
        payload: String,
    },
}

/// The library's worker functions the crawler calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KbFunction {
    Claim,
    StorePage,
    Renew,
    Finish,
}

impl KbFunction {
    /// One literal per function, so the statement cache keeps each.
    fn sql(self) -> &'static str {
        match self {
            KbFunction::Claim => "SELECT onboarding_kb_claim(?1)",
            KbFunction::StorePage => "SELECT onboarding_kb_store_page(?1)",
            KbFunction::Renew => "SELECT onboarding_kb_renew(?1)",
            KbFunction::Finish => "SELECT onboarding_kb_finish(?1)",
        }
    }
}

/// The SQL of `/healthz`: reads a table, so a broken file shows here.
const HEALTH_SQL: &str = "SELECT json_object('success', json('true'), 'status', 'ok', \
     'schema_version', onboarding_schema_version(), \
     'engine_version', onboarding_version())";

impl Query {
    /// Runs the call's one statement (prepared once, then cached) and returns
    /// its JSON text, or the SQL error text.
    pub(super) fn run(&self, conn: &Connection) -> Outcome {
        let result = match self {
            Query::Create {
                payload,
                ip_address,
                user_agent,
            } => query(
                conn,
                "SELECT onboarding_create(?1, ?2, ?3)",
                rusqlite::params![payload, ip_address, user_agent],
            ),
            Query::Step {
                session_id,
                step,
                payload,
            } => query(
                conn,
                "SELECT onboarding_step(?1, ?2, ?3)",
                rusqlite::params![session_id, step, payload],
            ),
            Query::Complete {
                session_id,
                payload,
            } => query(
                conn,
                "SELECT onboarding_complete(?1, ?2)",
                rusqlite::params![session_id, payload],
            ),
            Query::Get { session_id } => query(conn, "SELECT onboarding_get(?1)", [session_id]),
            Query::AgentTypes => query(conn, "SELECT onboarding_agent_types()", []),
            Query::Voices => query(conn, "SELECT onboarding_voices()", []),
            Query::Health => query(conn, HEALTH_SQL, []),
            Query::KbGet { session_id } => {
                query(conn, "SELECT onboarding_kb_get(?1)", [session_id])
            }
            Query::KbSearch { payload } => {
                query(conn, "SELECT onboarding_kb_search(?1)", [payload])
            }
            Query::Kb { function, payload } => query(conn, function.sql(), [payload]),
        };
        result.map_err(|e| Failure::from(&e))
    }
}

fn query<P: rusqlite::Params>(conn: &Connection, sql: &str, params: P) -> rusqlite::Result<String> {
    conn.prepare_cached(sql)?.query_row(params, |r| r.get(0))
}

/// What the writer answers for one call: the JSON body, or why not.
pub type Outcome = Result<String, Failure>;

/// Why a call has no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The database stayed locked by another connection (a `sqlite3` shell,
    /// a backup) past the busy timeout: worth retrying later.
    Busy(String),
    /// Anything else, as SQLite or the function said it: for a function's
    /// error, exactly `onboarding_<fn>: <kind>: <detail>`.
    Sql(String),
}

impl Failure {
    pub fn text(&self) -> &str {
        match self {
            Failure::Busy(text) | Failure::Sql(text) => text,
        }
    }
}

impl From<&rusqlite::Error> for Failure {
    fn from(err: &rusqlite::Error) -> Failure {
        match err.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                Failure::Busy(error_text(err))
            }
            _ => Failure::Sql(error_text(err)),
        }
    }
}

/// The text of an SQL error as the function raised it: for a function's
/// error, exactly `onboarding_<fn>: <kind>: <detail>`.
pub(super) fn error_text(err: &rusqlite::Error) -> String {
    match err {
        rusqlite::Error::SqliteFailure(_, Some(message)) => message.clone(),
        other => other.to_string(),
    }
}
