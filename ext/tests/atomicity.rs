//! Every writer is atomic: a call that fails part-way leaves every table as
//! it was, and a call inside a caller's transaction joins it.

mod common;

use common::Db;
use rusqlite::Connection;

fn ready_session(db: &Db, email: &str) -> String {
    let s = db.create();
    db.business(&s, email);
    db.vapi(&s);
    db.kb_website(&s);
    db.step(
        &s,
        "appointments",
        r#"{"provider":"cal_com","event_type_id":1}"#,
    )
    .unwrap();
    s
}

#[test]
fn completion_with_an_email_taken_in_the_meantime_leaves_everything() {
    let db = Db::memory();
    // Both sessions pass the business step with the same email...
    let first = ready_session(&db, "contact@entreprise.fr");
    let second = ready_session(&db, "contact@entreprise.fr");
    // ...the first completes, so the second's sync must fail as a whole.
    db.complete(&first).unwrap();
    let before = db.snapshot();
    assert_eq!(
        db.complete(&second).unwrap_err(),
        "onboarding_complete: conflict: email 'contact@entreprise.fr' is already used by another account"
    );
    assert_eq!(db.snapshot(), before);
}

/// A host's trigger that silently skips one of the sync's writes
/// (`RAISE(IGNORE)`) fails the completion, naming the table, and leaves
/// everything: it answered `success:true` with a campaign no row held.
#[test]
fn completion_a_trigger_skips_a_write_of_fails_and_leaves_everything() {
    for (table, event) in [
        ("tenants", "UPDATE"),
        ("omni_agent_configs", "INSERT"),
        ("omni_phone_mappings", "INSERT"),
        ("omnichannel_campaigns", "INSERT"),
        ("kb_crawl_jobs", "INSERT"),
        ("onboarding_sessions", "UPDATE"),
    ] {
        let db = Db::memory();
        let s = ready_session(&db, "contact@entreprise.fr");
        db.conn
            .execute_batch(&format!(
                "CREATE TEMP TRIGGER skip BEFORE {event} ON main.{table}
                 BEGIN SELECT RAISE(IGNORE); END;"
            ))
            .unwrap();
        let before = db.snapshot();
        assert_eq!(
            db.complete(&s).unwrap_err(),
            format!(
                "onboarding_complete: internal: the sync wrote no row to {table} (a trigger of \
                 this connection ignored the write); nothing of the completion is kept"
            )
        );
        assert_eq!(db.snapshot(), before, "{table}");
        db.conn.execute_batch("DROP TRIGGER skip").unwrap();
        assert_eq!(db.complete(&s).unwrap()["sync_status"], "synced");
    }
}

/// A host's trigger refusing the tenant's write (a constraint failure, as
/// a UNIQUE one is) is answered as itself, not as the email the UNIQUE
/// constraint on `tenants.email` would mean, and leaves everything.
#[test]
fn completion_refused_on_the_tenant_by_a_trigger_is_not_a_taken_email() {
    let db = Db::memory();
    let s = ready_session(&db, "contact@entreprise.fr");
    db.conn
        .execute_batch(
            "CREATE TEMP TRIGGER refuse_tenant BEFORE UPDATE ON main.tenants
             BEGIN SELECT RAISE(ABORT, 'refused by test'); END;",
        )
        .unwrap();
    let before = db.snapshot();
    assert_eq!(
        db.complete(&s).unwrap_err(),
        "onboarding_complete: internal: refused by test"
    );
    assert_eq!(db.snapshot(), before);
    db.conn.execute_batch("DROP TRIGGER refuse_tenant").unwrap();
    assert_eq!(db.complete(&s).unwrap()["sync_status"], "synced");
}

#[test]
fn completion_failing_on_a_late_constraint_leaves_everything() {
    let db = Db::memory();
    let s = ready_session(&db, "contact@entreprise.fr");
    // Provoke a failure on the last write of the sync (the session update)
    // after the tenant, agent, mapping, campaign, job and analytics writes.
    db.conn
        .execute_batch(
            "CREATE TEMP TRIGGER refuse_completion BEFORE UPDATE OF status ON onboarding_sessions
             BEGIN SELECT RAISE(ABORT, 'refused by test'); END;",
        )
        .unwrap();
    let before = db.snapshot();
    let err = db.complete(&s).unwrap_err();
    assert_eq!(err, "onboarding_complete: internal: refused by test");
    assert_eq!(db.snapshot(), before);
    for table in [
        "omni_agent_configs",
        "omni_phone_mappings",
        "omnichannel_campaigns",
        "kb_crawl_jobs",
    ] {
        assert_eq!(db.count(table), 0, "{table}");
    }
    // Once the obstacle is gone, the same call succeeds.
    db.conn
        .execute_batch("DROP TRIGGER refuse_completion")
        .unwrap();
    assert_eq!(db.complete(&s).unwrap()["sync_status"], "synced");
    assert_eq!(db.count("omni_agent_configs"), 1);
}

/// Host rollback (the server's batches): inside the host's transaction a
/// call runs without its savepoint, so one that fails after writing leaves
/// its writes for the host to undo, and `total_changes()` shows them. In
/// autocommit mode, or with the mode off, the call undoes itself as ever.
#[test]
fn under_host_rollback_a_failed_call_leaves_the_undoing_to_the_host() {
    let (statements, db) = Db::cached();
    let s = ready_session(&db, "contact@entreprise.fr");
    db.conn
        .execute_batch(
            "CREATE TEMP TRIGGER refuse_completion BEFORE UPDATE OF status ON onboarding_sessions
             BEGIN SELECT RAISE(ABORT, 'refused by test'); END;",
        )
        .unwrap();
    let refused = "onboarding_complete: internal: refused by test";
    let before = db.snapshot();
    let completed =
        || db.row("SELECT onboarding_completed FROM tenants", &[])["onboarding_completed"].clone();

    statements.set_host_rollback(true);
    db.conn.execute_batch("BEGIN").unwrap();
    // A call refused before writing leaves nothing to undo.
    db.step(&s, "vapi", r#"{"agent_type":"nope"}"#).unwrap_err();
    assert!(!statements.take_undo_needed());
    assert_eq!(db.complete(&s).unwrap_err(), refused);
    // The tenant, agent, mapping, campaign, job and analytics writes stay,
    // and the call is marked for the host to undo.
    assert_eq!(completed(), 1);
    assert_eq!(db.count("omni_agent_configs"), 1);
    assert!(statements.take_undo_needed());
    assert!(!statements.take_undo_needed(), "the mark is taken once");
    db.conn.execute_batch("ROLLBACK").unwrap();
    assert_eq!(db.snapshot(), before);

    // Outside a transaction the savepoint stays: the call is atomic alone.
    assert_eq!(db.complete(&s).unwrap_err(), refused);
    assert_eq!(db.snapshot(), before);

    statements.set_host_rollback(false);
    db.conn.execute_batch("BEGIN").unwrap();
    assert_eq!(db.complete(&s).unwrap_err(), refused);
    assert_eq!(db.snapshot(), before);
    db.conn.execute_batch("COMMIT").unwrap();
    assert_eq!(completed(), 0);
    drop(statements);
}

#[test]
fn a_failing_create_writes_nothing() {
    let db = Db::memory();
    db.conn
        .execute_batch(
            "CREATE TEMP TRIGGER refuse_analytics BEFORE INSERT ON onboarding_analytics
             BEGIN SELECT RAISE(ABORT, 'no analytics'); END;",
        )
        .unwrap();
    let before = db.snapshot();
    assert_eq!(
        db.call("SELECT onboarding_create('{}')", &[]).unwrap_err(),
        "onboarding_create: internal: no analytics"
    );
    assert_eq!(db.snapshot(), before);
}

#[test]
fn calls_inside_a_rolled_back_transaction_leave_nothing() {
    let db = Db::memory();
    let before = db.snapshot();
    db.conn.execute_batch("BEGIN").unwrap();
    let s = db.create();
    db.business(&s, "contact@entreprise.fr");
    db.vapi(&s);
    db.complete(&s).unwrap();
    assert_eq!(db.count("omni_agent_configs"), 1);
    db.conn.execute_batch("ROLLBACK").unwrap();
    assert_eq!(db.snapshot(), before);
}

#[test]
fn a_failing_call_inside_a_transaction_undoes_only_itself() {
    let db = Db::memory();
    db.conn.execute_batch("BEGIN").unwrap();
    let s = db.create();
    db.business(&s, "contact@entreprise.fr");
    let kept = db.snapshot();
    db.step(&s, "vapi", r#"{"agent_type":"nope"}"#).unwrap_err();
    assert_eq!(
        db.complete(&s).unwrap_err().split(": ").nth(1),
        Some("incomplete")
    );
    assert_eq!(db.snapshot(), kept);
    db.conn.execute_batch("COMMIT").unwrap();
    assert_eq!(db.snapshot(), kept);
}

#[test]
fn file_database_keeps_committed_calls_across_connections() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("onboarding.db");
    let session = {
        let db = Db::on(Connection::open(&path).unwrap());
        let s = db.create();
        db.business(&s, "contact@entreprise.fr");
        db.vapi(&s);
        // A refused call on the way must not disturb what was committed.
        db.complete("onb_unknown").unwrap_err();
        s
    };
    let db = Db::on(Connection::open(&path).unwrap());
    let state = db.get(&session);
    assert_eq!(state["current_step"], 4);
    assert_eq!(state["steps"]["vapi"]["assistant_name"], "Sara");
    assert_eq!(db.complete(&session).unwrap()["success"], true);
    assert_eq!(db.count("tenants"), 1);
}

/// One refused call for the table below: what to set up first (run as a
/// plain caller would), and the call itself, which must fail.
struct Refusal {
    name: &'static str,
    setup: fn(&Db) -> String,
    call: fn(&Db, &str) -> Result<serde_json::Value, String>,
}

fn nothing(_: &Db) -> String {
    String::new()
}

fn session(db: &Db) -> String {
    db.create()
}

fn with_business(db: &Db) -> String {
    let s = db.create();
    db.business(&s, "contact@entreprise.fr");
    s
}

/// A trigger that refuses the session's update: the last write of a step
/// and of a completion.
fn refusing_session_updates(db: &Db) -> String {
    let s = with_business(db);
    db.vapi(&s);
    db.conn
        .execute_batch(
            "CREATE TEMP TRIGGER refuse BEFORE UPDATE ON onboarding_sessions
             BEGIN SELECT RAISE(ABORT, 'refused by test'); END;",
        )
        .unwrap();
    s
}

fn refusing_analytics(db: &Db) -> String {
    db.conn
        .execute_batch(
            "CREATE TEMP TRIGGER refuse BEFORE INSERT ON onboarding_analytics
             BEGIN SELECT RAISE(ABORT, 'refused by test'); END;",
        )
        .unwrap();
    String::new()
}

/// The rule host rollback rests on, for every writer's ways to fail:
/// inside the host's transaction, a call that fails either changed nothing
/// or is marked for the host to undo (and the mark is never set for a call
/// that changed nothing, which would roll a whole batch back for nothing).
#[test]
fn under_host_rollback_every_failure_changes_nothing_or_is_marked() {
    let refusals = [
        Refusal {
            name: "create: payload not JSON",
            setup: nothing,
            call: |db, _| db.call("SELECT onboarding_create('{')", &[]),
        },
        Refusal {
            name: "create: analytics refused after the tenant and session",
            setup: refusing_analytics,
            call: |db, _| db.call("SELECT onboarding_create('{}')", &[]),
        },
        Refusal {
            name: "step: unknown step",
            setup: session,
            call: |db, s| db.step(s, "nope", "{}"),
        },
        Refusal {
            name: "step: unknown session",
            setup: nothing,
            call: |db, _| db.step("onb_missing", "vapi", "{}"),
        },
        Refusal {
            name: "step: invalid field",
            setup: session,
            call: |db, s| db.step(s, "vapi", r#"{"agent_type":"nope"}"#),
        },
        Refusal {
            name: "business: email of another tenant",
            setup: |db| {
                let first = with_business(db);
                db.vapi(&first);
                db.complete(&first).unwrap();
                db.create()
            },
            call: |db, s| {
                db.step(s, "business",
                r#"{"company_name":"B","industry":"C","phone":"06 12 34 56 79","email":"contact@entreprise.fr"}"#)
            },
        },
        Refusal {
            name: "business: the session's update refused after the tenant's",
            setup: refusing_session_updates,
            call: |db, s| {
                db.step(s, "business",
                r#"{"company_name":"B","industry":"C","phone":"06 12 34 56 79","email":"autre@entreprise.fr"}"#)
            },
        },
        Refusal {
            name: "complete: missing steps",
            setup: session,
            call: |db, s| db.complete(s),
        },
        Refusal {
            name: "complete: the session's update refused after the sync",
            setup: refusing_session_updates,
            call: |db, s| db.complete(s),
        },
        Refusal {
            name: "phone send: no business phone",
            setup: session,
            call: |db, s| db.call("SELECT onboarding_phone_send(?1, '{}')", &[&s]),
        },
        Refusal {
            name: "phone send: within the cooldown",
            setup: |db| {
                let s = with_business(db);
                db.call("SELECT onboarding_phone_send(?1, '{}')", &[&s])
                    .unwrap();
                s
            },
            call: |db, s| db.call("SELECT onboarding_phone_send(?1, '{}')", &[&s]),
        },
        Refusal {
            name: "phone verify: no code sent",
            setup: with_business,
            call: |db, s| {
                db.call(
                    "SELECT onboarding_phone_verify(?1, '{\"code\":\"123456\"}')",
                    &[&s],
                )
            },
        },
        Refusal {
            name: "outbox: a message not claimed",
            setup: |db| {
                let s = with_business(db);
                db.call("SELECT onboarding_phone_send(?1, '{}')", &[&s])
                    .unwrap();
                s
            },
            call: |db, _| db.call("SELECT onboarding_outbox_sent(1, 'w', NULL)", &[]),
        },
        Refusal {
            name: "kb store_page: no such job",
            setup: nothing,
            call: |db, _| {
                db.call(
                "SELECT onboarding_kb_store_page('{\"job_id\":99,\"worker\":\"w\",\"url\":\"https://mon-site.fr\",\"status\":\"stored\",\"title\":\"T\",\"markdown\":\"M\",\"links\":[]}')",
                &[])
            },
        },
    ];
    for refusal in refusals {
        let (statements, db) = Db::cached();
        let session = (refusal.setup)(&db);
        statements.set_host_rollback(true);
        db.conn.execute_batch("BEGIN").unwrap();
        let before = db.snapshot();
        let err = (refusal.call)(&db, &session);
        assert!(err.is_err(), "{}: succeeded: {err:?}", refusal.name);
        let changed = db.snapshot() != before;
        assert_eq!(
            statements.take_undo_needed(),
            changed,
            "{}: changed rows = {changed}, error {err:?}",
            refusal.name
        );
        db.conn.execute_batch("ROLLBACK").unwrap();
        statements.set_host_rollback(false);
        drop(statements);
    }
}

/// The connection to interrupt and the hook's calls left before the
/// interrupt (the test's hook's argument).
struct Due {
    db: *mut rusqlite::ffi::sqlite3,
    calls_left: std::cell::Cell<i64>,
}

unsafe extern "C" fn interrupt_when_due(due: *mut std::ffi::c_void) -> std::ffi::c_int {
    // SAFETY: the `Due` of `interrupted`, alive while its statement runs.
    let due = unsafe { &*due.cast::<Due>() };
    let left = due.calls_left.get() - 1;
    due.calls_left.set(left);
    if left == 0 {
        // SAFETY: the handle of the connection running the statement.
        unsafe { rusqlite::ffi::sqlite3_interrupt(due.db) };
    }
    0
}

unsafe extern "C" fn interrupt_when_due_at_prepare(
    due: *mut std::ffi::c_void,
    _action: std::ffi::c_int,
    _: *const std::ffi::c_char,
    _: *const std::ffi::c_char,
    _: *const std::ffi::c_char,
    _: *const std::ffi::c_char,
) -> std::ffi::c_int {
    // SAFETY: as in `interrupt_when_due`.
    unsafe { interrupt_when_due(due) };
    rusqlite::ffi::SQLITE_OK
}

/// Where the interrupt of [`interrupted`] is called from.
#[derive(Clone, Copy)]
enum At {
    /// SQLite's progress handler, at each step of its virtual machine (the
    /// calling statement's and the function's own).
    Step,
    /// SQLite's authorizer, at each authorization it asks while preparing
    /// a statement: an interrupt landing between two of the function's
    /// statements. A migration's statements (tables, indexes) run no loop,
    /// where SQLite calls a progress handler.
    Prepare,
}

/// What [`interrupted`] got: the answer, or the error's text and result
/// code.
type Outcome = Result<String, (String, Option<rusqlite::ErrorCode>)>;

/// Runs `sql` with `sqlite3_interrupt` called at the `calls`-th call of
/// the hook `at`: what a client's cancel does (the shell's Ctrl-C, Go's
/// cancelled context, Python's `interrupt()`) at that point. The outcome,
/// and how many calls of the hook it saw.
fn interrupted(
    db: &Db,
    at: At,
    calls: i64,
    sql: &str,
    params: &[&dyn rusqlite::ToSql],
) -> (Outcome, i64) {
    let handle = unsafe { db.conn.handle() };
    let due = Due {
        db: handle,
        calls_left: std::cell::Cell::new(calls),
    };
    let arg = std::ptr::from_ref(&due).cast_mut().cast();
    // SAFETY: the hook is removed before `due` goes.
    unsafe {
        match at {
            At::Step => {
                rusqlite::ffi::sqlite3_progress_handler(handle, 1, Some(interrupt_when_due), arg)
            }
            At::Prepare => {
                rusqlite::ffi::sqlite3_set_authorizer(
                    handle,
                    Some(interrupt_when_due_at_prepare),
                    arg,
                );
            }
        }
    }
    let result = db
        .conn
        .query_row(sql, params, |r| r.get::<_, rusqlite::types::Value>(0))
        .map(|v| format!("{v:?}"));
    unsafe {
        match at {
            At::Step => {
                rusqlite::ffi::sqlite3_progress_handler(handle, 0, None, std::ptr::null_mut())
            }
            At::Prepare => {
                rusqlite::ffi::sqlite3_set_authorizer(handle, None, std::ptr::null_mut());
            }
        }
    }
    let outcome = result.map_err(|e| match e {
        rusqlite::Error::SqliteFailure(code, text) => (text.unwrap_or_default(), Some(code.code)),
        other => (other.to_string(), None),
    });
    (outcome, calls - due.calls_left.get())
}

/// [`interrupted`] at the `steps`-th step of SQLite's virtual machine.
fn interrupted_after(db: &Db, steps: i64, sql: &str, params: &[&dyn rusqlite::ToSql]) -> Outcome {
    interrupted(db, At::Step, steps, sql, params).0
}

/// A call interrupted at any point leaves nothing and no transaction open,
/// and fails with SQLITE_INTERRUPT. Before, an interrupt after the call's
/// writes began failed its rollback too (every statement fails while the
/// interrupted one runs): the connection stayed inside the call's
/// transaction, the write lock held, and the next call's answer
/// (`success:true`) was never saved, or the caller's COMMIT saved half a
/// completion.
#[test]
fn an_interrupted_call_leaves_nothing_and_no_transaction_open() {
    let mut interrupted = 0;
    // Every third step, until the interrupt comes after the call's end.
    for steps in (1..100_000).step_by(3) {
        let db = Db::memory();
        let s = ready_session(&db, "contact@entreprise.fr");
        let before = db.snapshot();
        match interrupted_after(&db, steps, "SELECT onboarding_complete(?1, '{}')", &[&s]) {
            Ok(_) => {
                assert!(interrupted > 100, "{interrupted} interrupts only");
                return;
            }
            Err((text, code)) => {
                interrupted += 1;
                assert!(db.conn.is_autocommit(), "after {steps} steps: {text}");
                assert_eq!(db.snapshot(), before, "after {steps} steps: {text}");
                assert_eq!(
                    code,
                    Some(rusqlite::ErrorCode::OperationInterrupted),
                    "after {steps} steps: {text}"
                );
                // The next call is saved on its own.
                db.complete(&s).unwrap();
                assert_eq!(db.get(&s)["status"], "completed", "after {steps} steps");
            }
        }
    }
    panic!("the completion never ended within the steps tried");
}

/// Inside a caller's transaction, an interrupted call that had begun to
/// write rolls the whole transaction back, as SQLite does for any
/// interrupted write inside one: its half-made writes cannot be committed
/// with the caller's. Interrupted before it wrote, it leaves the caller's
/// transaction as it was.
#[test]
fn an_interrupted_call_inside_a_transaction_rolls_the_transaction_back() {
    let (mut kept, mut rolled_back) = (0, 0);
    for steps in (1..100_000).step_by(3) {
        let db = Db::memory();
        let s = ready_session(&db, "contact@entreprise.fr");
        let before = db.snapshot();
        db.conn.execute_batch("BEGIN").unwrap();
        db.step(&s, "channels", r#"{"channels":["phone","sms"]}"#)
            .unwrap();
        let with_the_step = db.snapshot();
        match interrupted_after(&db, steps, "SELECT onboarding_complete(?1, '{}')", &[&s]) {
            Ok(_) => {
                db.conn.execute_batch("COMMIT").unwrap();
                assert!(
                    kept > 0 && rolled_back > 100,
                    "{kept} kept, {rolled_back} rolled back"
                );
                return;
            }
            // The error says the caller's transaction went, when it did.
            Err((text, _)) if db.conn.is_autocommit() => {
                rolled_back += 1;
                assert_eq!(db.snapshot(), before, "after {steps} steps: {text}");
                assert!(
                    text.ends_with(
                        "; SQLite rolled back the caller's transaction with it (its statements \
                         before this call are undone)"
                    ),
                    "after {steps} steps: {text}"
                );
            }
            Err((text, _)) => {
                kept += 1;
                assert_eq!(db.snapshot(), with_the_step, "after {steps} steps: {text}");
                assert!(!text.contains("rolled back the caller's"), "{text}");
                db.conn.execute_batch("ROLLBACK").unwrap();
            }
        }
    }
    panic!("the completion never ended within the steps tried");
}

/// A reader interrupted inside a caller's transaction leaves it as it was:
/// the caller's writes stay, to be committed. (The probe that ends an
/// interrupted writer's transaction rolled the caller's back for a read.)
#[test]
fn an_interrupted_read_inside_a_transaction_keeps_the_callers_writes() {
    let mut interrupted = 0;
    for steps in (1..100_000).step_by(2) {
        let db = Db::memory();
        let s = ready_session(&db, "contact@entreprise.fr");
        db.conn
            .execute_batch("CREATE TABLE mine (x); BEGIN; INSERT INTO mine VALUES (1)")
            .unwrap();
        match interrupted_after(&db, steps, "SELECT onboarding_get(?1)", &[&s]) {
            Ok(_) => {
                db.conn.execute_batch("COMMIT").unwrap();
                assert!(interrupted > 20, "{interrupted} interrupts only");
                return;
            }
            Err((text, code)) => {
                interrupted += 1;
                assert_eq!(
                    code,
                    Some(rusqlite::ErrorCode::OperationInterrupted),
                    "after {steps} steps: {text}"
                );
                assert!(!db.conn.is_autocommit(), "after {steps} steps: {text}");
                db.conn.execute_batch("COMMIT").unwrap();
                assert_eq!(db.count("mine"), 1, "after {steps} steps: {text}");
            }
        }
    }
    panic!("the read never ended within the steps tried");
}

/// The first migration interrupted at any point: nothing is left half
/// made. Where SQLite leaves the migration's transaction open (an
/// interrupt between two statements, before the probe could be prepared:
/// no table exists yet), the error says to roll it back, and once rolled
/// back the migration runs whole.
#[test]
fn an_interrupted_migration_leaves_nothing_or_says_to_roll_back() {
    let fresh = || {
        let conn = Connection::open_in_memory().unwrap();
        let env = onboarding::PinnedEnv::new(common::T0, 42);
        onboarding::register_with(&conn, env.clone()).unwrap();
        Db { conn, env }
    };
    // The authorizations a whole migration asks.
    let (_, whole) = interrupted(
        &fresh(),
        At::Prepare,
        i64::MAX,
        "SELECT onboarding_migrate()",
        &[],
    );
    let (mut rolled_back, mut told) = (0, 0);
    for steps in (1..=whole).step_by(usize::try_from(whole / 150).unwrap().max(1)) {
        let db = fresh();
        match interrupted(&db, At::Prepare, steps, "SELECT onboarding_migrate()", &[]).0 {
            // Interrupted while the calling statement was prepared: SQLite
            // forgets such an interrupt when the statement starts.
            Ok(answer) => assert!(steps < 5, "{answer} after {steps} of {whole}"),
            Err((text, code)) => {
                assert_eq!(
                    code,
                    Some(rusqlite::ErrorCode::OperationInterrupted),
                    "after {steps} steps: {text}"
                );
                if db.conn.is_autocommit() {
                    rolled_back += 1;
                } else {
                    told += 1;
                    assert!(
                        text.ends_with(
                            "; the transaction this call opened is still open (SQLite refuses \
                             every statement while the interrupted one runs): run ROLLBACK"
                        ),
                        "after {steps} steps: {text}"
                    );
                    db.conn.execute_batch("ROLLBACK").unwrap();
                }
                let tables: i64 = db
                    .conn
                    .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
                    .unwrap();
                assert_eq!(tables, 0, "after {steps} steps: {text}");
                db.conn
                    .query_row("SELECT onboarding_migrate()", [], |r| r.get::<_, i64>(0))
                    .unwrap();
            }
        }
    }
    assert!(
        rolled_back > 20 && told > 20,
        "{rolled_back} rolled back, {told} told, of {whole} authorizations"
    );
}

/// A re-cut interrupted at any point: SQLITE_INTERRUPT, no transaction
/// left open, and no failure recorded against the document (it was
/// recorded as the document's, `internal: interrupted`, or the recording
/// failed too, with SQLITE_ERROR).
#[test]
fn an_interrupted_recut_records_no_failure_of_the_document() {
    let mut interrupted = 0;
    for steps in (1..100_000).step_by(3) {
        let db = Db::memory();
        let s = db.create();
        db.business(&s, "contact@entreprise.fr");
        db.vapi(&s);
        db.step(
            &s,
            "kb",
            r#"{"method":"documents","documents":[{"title":"Tarifs","content":"Coupe 25 euros. Brushing 15 euros."}]}"#,
        )
        .unwrap();
        db.complete(&s).unwrap();
        db.conn
            .execute_batch("UPDATE kb_documents SET cut = 0")
            .unwrap();
        match interrupted_after(&db, steps, "SELECT onboarding_kb_recut()", &[]) {
            Ok(_) => {
                assert!(interrupted > 20, "{interrupted} interrupts only");
                return;
            }
            Err((text, code)) => {
                interrupted += 1;
                assert_eq!(
                    (code, db.conn.is_autocommit(), db.count("kb_recut_failures")),
                    (Some(rusqlite::ErrorCode::OperationInterrupted), true, 0),
                    "after {steps} steps: {text}"
                );
            }
        }
    }
    panic!("the re-cut never ended within the steps tried");
}
