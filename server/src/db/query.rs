//! [`Query`]: the one SQL statement each route runs, and what it answers;
//! [`Backend`]: what a batch of them runs on.

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
        /// The client's `Idempotency-Key`, scoped to its address: the
        /// keyed form then answers the first session made with it again.
        /// It stands in for a backend's own key (see [`Query::statement`]).
        client_key: Option<String>,
    },
    /// `SELECT onboarding_create_kept(?1, ?2)` (`'null'` for its NULL): a
    /// create past the address's limit, with a key, is answered the
    /// session the key already made, if any, without creating one. It
    /// reads, but on the writer: a retry sent while its create still waits
    /// in the writer's queue (the client gave up on the answer) must find
    /// the session, which a read beside the queue would not see yet.
    CreateKept {
        payload: Option<String>,
        client_key: String,
    },
    /// `SELECT onboarding_step_kept(?1, ?2, ?3, ?4)` (`'null'` for its
    /// NULL): a keyed business step past the limits on "email already
    /// used" answers is answered what the key already saved, if anything,
    /// without saving. On the writer, as [`Query::CreateKept`].
    StepKept {
        session_id: String,
        step: &'static str,
        payload: Option<String>,
        client_key: String,
    },
    /// `SELECT onboarding_step(?1, ?2, ?3)`; `None` payload binds NULL.
    Step {
        session_id: String,
        step: &'static str,
        payload: Option<String>,
        /// The client's `Idempotency-Key`, scoped to the session (see
        /// `http::session_key`): the keyed form then answers the call's
        /// first answer again. As a create's, it stands in for a backend's
        /// own key.
        client_key: Option<String>,
    },
    /// `SELECT onboarding_complete(?1, ?2)`.
    Complete {
        session_id: String,
        payload: Option<String>,
        client_key: Option<String>,
    },
    /// `SELECT onboarding_get(?1)`.
    Get { session_id: String },
    /// `SELECT onboarding_phone_send(?1, ?2, ?3)`: the payload and the
    /// client's address, kept with the verification.
    PhoneSend {
        session_id: String,
        payload: Option<String>,
        ip_address: String,
        client_key: Option<String>,
    },
    /// `SELECT onboarding_phone_verify(?1, ?2)`.
    PhoneVerify {
        session_id: String,
        payload: Option<String>,
        client_key: Option<String>,
    },
    /// `SELECT onboarding_outbox_claim(?1, ?2)`: the `--outbox-log` sender
    /// takes a message.
    OutboxClaim { worker: String, lease_seconds: i64 },
    /// `SELECT onboarding_outbox_sent(?1, ?2, ?3)`.
    OutboxSent {
        id: i64,
        worker: String,
        provider_id: Option<String>,
    },
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
    /// `SELECT onboarding_kb_recut()`: an idle crawler's, one document cut
    /// again by this library's chunker.
    KbRecut,
}

/// The library's worker functions the crawler calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KbFunction {
    Claim,
    StorePage,
    Renew,
    Finish,
    Release,
    SiteTake,
    SiteRelease,
}

impl KbFunction {
    /// One literal per function, so the statement cache keeps each.
    fn sql(self) -> &'static str {
        match self {
            KbFunction::Claim => "SELECT onboarding_kb_claim(?1)",
            KbFunction::StorePage => "SELECT onboarding_kb_store_page(?1)",
            KbFunction::Renew => "SELECT onboarding_kb_renew(?1)",
            KbFunction::Finish => "SELECT onboarding_kb_finish(?1)",
            KbFunction::Release => "SELECT onboarding_kb_release(?1)",
            KbFunction::SiteTake => "SELECT onboarding_kb_site_take(?1)",
            KbFunction::SiteRelease => "SELECT onboarding_kb_site_release(?1)",
        }
    }
}

/// The SQL of `/healthz`: reads a table, so a broken file shows here.
const HEALTH_SQL: &str = "SELECT json_object('success', json('true'), 'status', 'ok', \
     'schema_version', onboarding_schema_version(), \
     'engine_version', onboarding_version())";

impl Query {
    /// Whether the call must carry a request key on a backend whose commit
    /// can have an unknown outcome: the calls that are not safe to run
    /// twice (a reader writes nothing). A step is not: run again after a
    /// completion in the same batch it would answer 409 although it was
    /// saved, and after a later step its `current_step` would be that
    /// step's.
    pub(super) fn keyed(&self) -> bool {
        matches!(
            self,
            Query::Create { .. }
                | Query::Step { .. }
                | Query::Complete { .. }
                | Query::PhoneSend { .. }
                | Query::PhoneVerify { .. }
        )
    }

    /// The session a completion completes; `None` for any other call.
    pub(super) fn completes(&self) -> Option<&str> {
        match self {
            Query::Complete { session_id, .. } => Some(session_id),
            _ => None,
        }
    }

    /// Whether the call's payload is a JSON object, or absent (read as
    /// `{}`): what the library's writers accept. Cheap beside what a
    /// backend would do before the call and undo after it.
    pub(super) fn payload_is_object(&self) -> bool {
        let payload = match self {
            Query::Create { payload, .. }
            | Query::Step { payload, .. }
            | Query::Complete { payload, .. }
            | Query::PhoneSend { payload, .. }
            | Query::PhoneVerify { payload, .. } => payload.as_deref(),
            _ => None,
        };
        payload.is_none_or(|text| {
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text).is_ok()
        })
    }

    /// The keyed forms [`Query::statement`] calls (name, arguments): a
    /// backend that sends keys checks at start that its engine has them.
    pub(super) const KEYED_FORMS: &'static [(&'static str, u32)] = &[
        ("onboarding_create", 4),
        ("onboarding_step", 4),
        ("onboarding_complete", 3),
        ("onboarding_phone_send", 4),
        ("onboarding_phone_verify", 3),
    ];

    /// Whether the call only reads: the library registers these functions
    /// as readers (or constants), so they run in a read transaction, which
    /// needs no write lock.
    pub(super) fn reads_only(&self) -> bool {
        matches!(
            self,
            Query::Get { .. }
                | Query::AgentTypes
                | Query::Voices
                | Query::Health
                | Query::KbGet { .. }
                | Query::KbSearch { .. }
        )
    }

    /// The call's one statement and its arguments. `request_key`, given by
    /// a backend whose commit can have an unknown outcome (see
    /// [`Query::keyed`]), is passed to the function's keyed form, which
    /// answers its first answer again when the same key runs twice.
    pub(super) fn statement<'a>(
        &'a self,
        request_key: Option<&'a str>,
    ) -> (&'static str, Vec<Arg<'a>>) {
        match self {
            Query::Create {
                payload,
                ip_address,
                user_agent,
                client_key,
            } => {
                let mut args = vec![
                    Arg::Text(payload.as_deref()),
                    text(ip_address),
                    text(user_agent),
                ];
                // The client's key also covers a backend's retry after a
                // commit of unknown outcome: the same key, the same answer.
                match client_key.as_deref().or(request_key) {
                    Some(key) => {
                        args.push(Arg::Text(Some(key)));
                        ("SELECT onboarding_create(?1, ?2, ?3, ?4)", args)
                    }
                    None => ("SELECT onboarding_create(?1, ?2, ?3)", args),
                }
            }
            Query::CreateKept {
                payload,
                client_key,
            } => (
                "SELECT coalesce(onboarding_create_kept(?1, ?2), 'null')",
                vec![Arg::Text(payload.as_deref()), text(client_key)],
            ),
            Query::StepKept {
                session_id,
                step,
                payload,
                client_key,
            } => (
                "SELECT coalesce(onboarding_step_kept(?1, ?2, ?3, ?4), 'null')",
                vec![
                    text(session_id),
                    Arg::Text(Some(step)),
                    Arg::Text(payload.as_deref()),
                    text(client_key),
                ],
            ),
            Query::Step {
                session_id,
                step,
                payload,
                client_key,
            } => keyed(
                (
                    "SELECT onboarding_step(?1, ?2, ?3)",
                    "SELECT onboarding_step(?1, ?2, ?3, ?4)",
                ),
                vec![
                    text(session_id),
                    Arg::Text(Some(step)),
                    Arg::Text(payload.as_deref()),
                ],
                client_key.as_deref(),
                request_key,
            ),
            Query::Complete {
                session_id,
                payload,
                client_key,
            } => keyed(
                (
                    "SELECT onboarding_complete(?1, ?2)",
                    "SELECT onboarding_complete(?1, ?2, ?3)",
                ),
                vec![text(session_id), Arg::Text(payload.as_deref())],
                client_key.as_deref(),
                request_key,
            ),
            Query::Get { session_id } => ("SELECT onboarding_get(?1)", vec![text(session_id)]),
            Query::PhoneSend {
                session_id,
                payload,
                ip_address,
                client_key,
            } => keyed(
                (
                    "SELECT onboarding_phone_send(?1, ?2, ?3)",
                    "SELECT onboarding_phone_send(?1, ?2, ?3, ?4)",
                ),
                vec![
                    text(session_id),
                    Arg::Text(payload.as_deref()),
                    text(ip_address),
                ],
                client_key.as_deref(),
                request_key,
            ),
            Query::PhoneVerify {
                session_id,
                payload,
                client_key,
            } => keyed(
                (
                    "SELECT onboarding_phone_verify(?1, ?2)",
                    "SELECT onboarding_phone_verify(?1, ?2, ?3)",
                ),
                vec![text(session_id), Arg::Text(payload.as_deref())],
                client_key.as_deref(),
                request_key,
            ),
            Query::OutboxClaim {
                worker,
                lease_seconds,
            } => (
                "SELECT onboarding_outbox_claim(?1, ?2)",
                vec![text(worker), Arg::Integer(*lease_seconds)],
            ),
            Query::OutboxSent {
                id,
                worker,
                provider_id,
            } => (
                "SELECT onboarding_outbox_sent(?1, ?2, ?3)",
                vec![
                    Arg::Integer(*id),
                    text(worker),
                    Arg::Text(provider_id.as_deref()),
                ],
            ),
            Query::AgentTypes => ("SELECT onboarding_agent_types()", Vec::new()),
            Query::Voices => ("SELECT onboarding_voices()", Vec::new()),
            Query::Health => (HEALTH_SQL, Vec::new()),
            Query::KbGet { session_id } => (
                "SELECT onboarding_kb_get(?1)",
                vec![Arg::Text(session_id.as_deref())],
            ),
            Query::KbSearch { payload } => ("SELECT onboarding_kb_search(?1)", vec![text(payload)]),
            Query::Kb { function, payload } => (function.sql(), vec![text(payload)]),
            Query::KbRecut => ("SELECT onboarding_kb_recut()", Vec::new()),
        }
    }

    /// Runs the call's one statement on the file's connection (prepared
    /// once, then cached) and returns its JSON text, or the SQL error text.
    pub(super) fn run(&self, conn: &Connection) -> Outcome {
        let (sql, args) = self.statement(None);
        conn.prepare_cached(sql)
            .and_then(|mut s| s.query_row(rusqlite::params_from_iter(args), |r| r.get(0)))
            .map_err(|e| Failure::from(&e))
    }
}

/// One argument of a statement, as either backend binds it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Arg<'a> {
    /// TEXT, or NULL for `None`.
    Text(Option<&'a str>),
    Integer(i64),
}

fn text(value: &str) -> Arg<'_> {
    Arg::Text(Some(value))
}

/// A call with a keyed form: the plain statement, or the keyed one with the
/// key as its last argument, the client's (its `Idempotency-Key`) else the
/// backend's.
fn keyed<'a>(
    (plain, with_key): (&'static str, &'static str),
    mut args: Vec<Arg<'a>>,
    client_key: Option<&'a str>,
    request_key: Option<&'a str>,
) -> (&'static str, Vec<Arg<'a>>) {
    match client_key.or(request_key) {
        Some(key) => {
            args.push(Arg::Text(Some(key)));
            (with_key, args)
        }
        None => (plain, args),
    }
}

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Arg::Text(text) => text.to_sql(),
            Arg::Integer(n) => n.to_sql(),
        }
    }
}

/// What a batch of calls runs on: the single file (the default) or a dqlite
/// cluster. The writer thread owns one and hands it each batch.
pub(super) trait Backend: Send {
    /// Runs `queries` in one transaction (one commit, or one Raft entry)
    /// and fills `replies` with one answer per query, each true of what was
    /// committed.
    fn run_batch(&mut self, queries: &[&Query], replies: &mut Vec<Outcome>);
    /// Called before each batch with when its oldest call was queued (the
    /// file counts its busy timeout from there).
    fn queued_since(&mut self, _oldest: std::time::Instant) {}
    /// Called after each batch has run (the file's checkpointer).
    fn after_batch(&mut self) {}
    /// Answers the batch just run: at once, or (the file under
    /// `--synchronous full`) once its commit is on disk.
    fn deliver(&mut self, answers: Vec<Answer>) {
        answer(answers);
    }
    /// Closes the database: called once, after the last batch.
    fn close(self: Box<Self>) -> Result<(), String>;
}

/// What the writer answers for one call: the JSON body, or why not.
pub type Outcome = Result<String, Failure>;

/// One call's reply channel and its answer.
pub(super) type Answer = (tokio::sync::oneshot::Sender<Outcome>, Outcome);

/// Sends each answer to its call.
pub(super) fn answer(answers: Vec<Answer>) {
    for (reply, outcome) in answers {
        // The request may have gone (client disconnected): its write
        // stands, as it would for a client that left after the answer.
        let _ = reply.send(outcome);
    }
}

/// Why a call has no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The database stayed locked by another connection (a `sqlite3` shell,
    /// a backup) past the busy timeout, or the cluster had no leader for
    /// too long: worth retrying later.
    Busy(String),
    /// The cluster lost its leader or its quorum after a COMMIT was sent,
    /// and found none again in time: the calls may still take effect (the
    /// entry is in a leader's log, and is applied once a quorum holds it).
    Unconfirmed(String),
    /// Anything else, as SQLite or the function said it: for a function's
    /// error, exactly `onboarding_<fn>: <kind>: <detail>`.
    Sql(String),
}

impl Failure {
    pub fn text(&self) -> &str {
        match self {
            Failure::Busy(text) | Failure::Unconfirmed(text) | Failure::Sql(text) => text,
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

/// A query answering the forms the server calls that the engine lacks
/// (the keyed ones, `onboarding_step/4, …`, `onboarding_kb_prepare/1`
/// before a completion, the idle crawler's `onboarding_kb_recut/0`, and
/// `onboarding_create_kept/2` and `onboarding_step_kept/4` for a keyed
/// create or business step past a limit), or NULL when it has them all.
pub(super) fn missing_forms_sql() -> String {
    let forms: Vec<String> = Query::KEYED_FORMS
        .iter()
        .chain(&[
            ("onboarding_kb_prepare", 1),
            ("onboarding_kb_recut", 0),
            ("onboarding_create_kept", 2),
            ("onboarding_step_kept", 4),
        ])
        .map(|(name, args)| format!("('{name}', {args})"))
        .collect();
    format!(
        "WITH needed(name, narg) AS (VALUES {}) \
         SELECT group_concat(name || '/' || narg, ', ') FROM needed \
         WHERE NOT EXISTS (SELECT 1 FROM pragma_function_list AS f \
                           WHERE f.name = needed.name AND f.narg = needed.narg)",
        forms.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::{Arg, Query};

    #[test]
    fn a_payload_is_an_object_or_absent() {
        let complete = |payload: Option<&str>| Query::Complete {
            session_id: "onb_1".into(),
            payload: payload.map(str::to_string),
            client_key: None,
        };
        for payload in [None, Some("{}"), Some(" {\"a\": [1]} "), Some("{\"a\":{}}")] {
            assert!(complete(payload).payload_is_object(), "{payload:?}");
        }
        for payload in ["[]", "null", "\"{}\"", "{", "{} {}", "", "1"] {
            assert!(!complete(Some(payload)).payload_is_object(), "{payload:?}");
        }
        assert!(Query::Health.payload_is_object());
    }

    /// A client's `Idempotency-Key` is its call's key on either backend:
    /// the file's, which sends none of its own, and a cluster's, whose
    /// retry after a commit of unknown outcome then sends the client's, so
    /// that the client's own retry finds the answer kept under it.
    #[test]
    fn a_clients_key_stands_in_for_the_backends() {
        const CLIENT: &str = "5b0e8a1c-2f43-4c5e-9a7d-0c1b2d3e4f50";
        let key = || Some(CLIENT.to_string());
        let writers = [
            Query::Step {
                session_id: "onb_1".into(),
                step: "business",
                payload: None,
                client_key: key(),
            },
            Query::Complete {
                session_id: "onb_1".into(),
                payload: None,
                client_key: key(),
            },
            Query::PhoneSend {
                session_id: "onb_1".into(),
                payload: None,
                ip_address: "192.0.2.1".into(),
                client_key: key(),
            },
            Query::PhoneVerify {
                session_id: "onb_1".into(),
                payload: None,
                client_key: key(),
            },
        ];
        for query in &writers {
            for backend in [None, Some("0123456789abcdef0123456789abcdef")] {
                let (sql, args) = query.statement(backend);
                assert_eq!(args.last(), Some(&Arg::Text(Some(CLIENT))), "{sql}");
                let keyed = Query::KEYED_FORMS
                    .iter()
                    .any(|(name, n)| sql == format!("SELECT {name}({})", placeholders(*n)));
                assert!(keyed, "{sql}");
            }
        }
    }

    fn placeholders(n: u32) -> String {
        (1..=n)
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
