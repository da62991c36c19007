"""The whole onboarding through Python's sqlite3 module and libonboarding.so.

Usage: /usr/bin/python3 onboarding_flow.py PATH/TO/libonboarding.so DB_PATH
(Debian's python3: the pyenv build may lack enable_load_extension.)
"""

import json
import sqlite3
import subprocess
import sys
import unittest

import extension

EXTENSION, DB_PATH = sys.argv[1], sys.argv[2]


def connect():
    return extension.connect(EXTENSION, DB_PATH)


def call(conn, sql, *args):
    return json.loads(conn.execute(sql, args).fetchone()[0])


class Onboarding(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.conn = connect()
        cls.conn.execute("SELECT onboarding_migrate()")

    def test_whole_flow_writes_all_tables(self):
        c = self.conn
        created = call(c, "SELECT onboarding_create(?)", json.dumps({"source": "web"}))
        s, tenant = created["session_id"], created["tenant_id"]
        self.assertEqual(created, {"success": True, "session_id": s, "tenant_id": tenant})
        step = "SELECT onboarding_step(?, ?, ?)"
        answers = [
            call(c, step, s, "business", json.dumps({
                "company_name": "Cabinet Santé Plus", "industry": "Santé",
                "phone": "01 42 68 53 00", "email": "accueil@sante-plus.fr"})),
            call(c, step, s, "channels", json.dumps({"channels": ["phone", "sms"]})),
            call(c, step, s, "vapi", json.dumps({
                "agent_type": "appointment_booking", "voice": "male",
                "assistant_name": "Hugo"})),
            call(c, step, s, "kb", json.dumps({"method": "skip"})),
        ]
        self.assertEqual(
            [(a["step"], a["current_step"], a["progress_percentage"]) for a in answers],
            [("business", 2, 33), ("channels", 3, 50), ("vapi", 4, 66), ("kb", 5, 83)])
        done = call(c, "SELECT onboarding_complete(?, '{}')", s)
        self.assertEqual(done["sync_status"], "synced")
        self.assertEqual(done["synced"]["campaign"], None)
        self.assertEqual(done["synced"]["knowledge_base"], {"method": "skip", "crawl_job": None, "documents": None})

        rows = lambda sql: c.execute(sql, (tenant,)).fetchall()
        self.assertEqual(
            rows("SELECT name, email, phone, sector, onboarding_completed FROM tenants WHERE id = ?"),
            [("Cabinet Santé Plus", "accueil@sante-plus.fr", "+33142685300", "Santé", 1)])
        self.assertEqual(
            rows("SELECT status, current_step, progress_percentage FROM onboarding_sessions "
                 "WHERE tenant_id = ?"),
            [("completed", 6, 100)])
        self.assertEqual(
            rows("SELECT completed FROM onboarding_analytics WHERE tenant_id = ?"), [(1,)])
        self.assertEqual(
            rows("SELECT agent_type, agent_name, voice_id, greeting_message "
                 "FROM omni_agent_configs WHERE tenant_id = ?"),
            [("appointment_booking", "Hugo", "onwK4e9ZLuTAKqWW03F9",
              "Bonjour, Hugo pour Cabinet Santé Plus, je peux vous aider à prendre rendez-vous.")])
        self.assertEqual(
            rows("SELECT phone_number, is_active, status FROM omni_phone_mappings WHERE tenant_id = ?"),
            [("+33142685300", 0, "pending_verification")])
        self.assertEqual(
            rows("SELECT count(*) FROM omnichannel_campaigns WHERE tenant_id = ?"), [(0,)])
        self.assertEqual(rows("SELECT count(*) FROM kb_crawl_jobs WHERE tenant_id = ?"), [(0,)])

    def test_errors_carry_their_kind_and_leave_nothing(self):
        c = self.conn
        before = c.execute("SELECT count(*) FROM tenants").fetchone()
        with self.assertRaises(sqlite3.OperationalError) as caught:
            c.execute("SELECT onboarding_step('onb_nope', 'kb', '{\"method\":\"skip\"}')")
        self.assertEqual(str(caught.exception),
                         "onboarding_step: not_found: session 'onb_nope' does not exist")
        with self.assertRaises(sqlite3.OperationalError) as caught:
            c.execute("SELECT onboarding_create('{\"ip_address\":\"nope\"}')")
        self.assertEqual(str(caught.exception),
                         "onboarding_create: invalid_field: ip_address 'nope' is not an IPv4 or IPv6 address")
        self.assertEqual(c.execute("SELECT count(*) FROM tenants").fetchone(), before)

    def test_a_database_locked_past_the_timeout_is_sqlite_busy_with_its_text(self):
        # Another connection holds the write lock: the call waits out this
        # connection's busy timeout, then fails with SQLite's SQLITE_BUSY
        # (a client may retry on it), the contract's text kept.
        holder, waiter = connect(), sqlite3.connect(DB_PATH, isolation_level=None, timeout=0.1)
        waiter.enable_load_extension(True)
        waiter.load_extension(EXTENSION)
        s = call(self.conn, "SELECT onboarding_create()")["session_id"]
        before = self.conn.execute("SELECT count(*) FROM tenants").fetchone()
        holder.execute("BEGIN IMMEDIATE")
        try:
            with self.assertRaises(sqlite3.OperationalError) as caught:
                waiter.execute("SELECT onboarding_create()")
            with self.assertRaises(sqlite3.OperationalError) as step:
                waiter.execute(
                    "SELECT onboarding_step(?, 'channels', '{\"channels\":[\"sms\"]}')", (s,))
        finally:
            holder.execute("ROLLBACK")
        self.assertEqual(
            (caught.exception.sqlite_errorcode, caught.exception.sqlite_errorname,
             str(caught.exception)),
            (sqlite3.SQLITE_BUSY, "SQLITE_BUSY",
             "onboarding_create: internal: database is locked: another connection held the "
             "write lock past this connection's busy timeout (PRAGMA busy_timeout); retry later"))
        self.assertEqual(step.exception.sqlite_errorcode, sqlite3.SQLITE_BUSY)
        # Any other error stays SQLITE_ERROR.
        with self.assertRaises(sqlite3.OperationalError) as other:
            waiter.execute("SELECT onboarding_step('onb_nope', 'kb', '{\"method\":\"skip\"}')")
        self.assertEqual(other.exception.sqlite_errorcode, sqlite3.SQLITE_ERROR)
        self.assertEqual(self.conn.execute("SELECT count(*) FROM tenants").fetchone(), before)
        holder.close()
        waiter.close()

    def test_an_interrupted_call_leaves_nothing_and_no_transaction_open(self):
        # conn.interrupt() (as Go's cancelled context, the shell's Ctrl-C)
        # at each point of a completion in turn: SQLITE_INTERRUPT, the
        # contract's text, no transaction left open, nothing written, and
        # the next call saved on its own. Before, the call's rollback was
        # interrupted too: the connection stayed in its transaction, and
        # the retried completion answered success and was never saved.
        c, other = connect(), connect()
        step = "SELECT onboarding_step(?, ?, ?)"
        interrupts = 0
        for due in range(1, 20000, 5):
            s = call(c, "SELECT onboarding_create()")["session_id"]
            call(c, step, s, "business", json.dumps({
                "company_name": "Garage Martin", "industry": "Automobile",
                "phone": "06 12 34 56 78", "email": f"interrupt-{due}@garage-martin.fr"}))
            call(c, step, s, "vapi", json.dumps({
                "agent_type": "phone_reception", "voice": "female", "assistant_name": "Léa"}))
            left = [due]

            def countdown():
                left[0] -= 1
                if left[0] == 0:
                    c.interrupt()
                return 0

            c.set_progress_handler(countdown, 1)
            try:
                call(c, "SELECT onboarding_complete(?, '{}')", s)
            except sqlite3.OperationalError as e:
                self.assertEqual(
                    (e.sqlite_errorcode, c.in_transaction), (sqlite3.SQLITE_INTERRUPT, False),
                    f"after {due} steps")
                state = other.execute(
                    "SELECT status, (SELECT count(*) FROM omni_agent_configs a "
                    "WHERE a.tenant_id = s.tenant_id) FROM onboarding_sessions s WHERE id = ?",
                    (s,)).fetchone()
                if str(e) == "interrupted":
                    # SQLite's own: the interrupt came before the function
                    # was called, or after it had returned (committed).
                    self.assertIn(state, [("in_progress", 0), ("completed", 1)])
                    if state == ("completed", 1):
                        break
                    continue
                interrupts += 1
                self.assertEqual(
                    (str(e), state),
                    ("onboarding_complete: internal: interrupted", ("in_progress", 0)),
                    f"after {due} steps")
                continue
            finally:
                c.set_progress_handler(None, 0)
            break
        else:
            self.fail("the completion never ended within the steps tried")
        self.assertGreater(interrupts, 50)
        # The next call after an interrupt is saved: the other connection
        # sees it.
        self.assertEqual(
            other.execute("SELECT status FROM onboarding_sessions WHERE id = ?", (s,)).fetchone(),
            ("completed",))
        c.close()
        other.close()

    def test_rollback_of_a_python_transaction_leaves_nothing(self):
        c = self.conn
        before = c.execute("SELECT count(*) FROM tenants").fetchone()
        c.execute("BEGIN")
        s = call(c, "SELECT onboarding_create()")["session_id"]
        call(c, "SELECT onboarding_step(?, 'channels', '{\"channels\":[\"email\"]}')", s)
        c.execute("ROLLBACK")
        self.assertEqual(c.execute("SELECT count(*) FROM tenants").fetchone(), before)
        self.assertEqual(
            c.execute("SELECT count(*) FROM onboarding_sessions WHERE id = ?", (s,)).fetchone(),
            (0,))

    def test_kept_statements_follow_schema_changes_and_other_connections(self):
        # The extension keeps each connection's statements between calls:
        # a schema change makes SQLite prepare them again, and each
        # connection keeps its own.
        first, second = self.conn, connect()
        business = "SELECT onboarding_step(?, 'business', ?)"

        def flow(c, email):
            s = call(c, "SELECT onboarding_create()")["session_id"]
            payload = {"company_name": "Salon", "industry": "Coiffure",
                       "phone": "06 12 34 56 78", "email": email}
            self.assertEqual(call(c, business, s, json.dumps(payload))["current_step"], 2)
            call(c, "SELECT onboarding_step(?, 'channels', '{\"channels\":[\"email\"]}')", s)
            done = call(c, "SELECT onboarding_complete(?)", s)
            self.assertEqual(done["sync_status"], "synced")
            return s

        sessions = [flow(first, "a@schema.fr"), flow(second, "b@schema.fr")]
        first.execute("CREATE TABLE mine (x)")
        first.execute("ALTER TABLE tenants ADD COLUMN mine TEXT")
        sessions += [flow(first, "c@schema.fr"), flow(second, "d@schema.fr")]
        # The holder of the kept statements: a table with no rows.
        self.assertEqual(
            first.execute("SELECT count(*) FROM onboarding_statement_cache").fetchone(), (0,))
        second.close()
        third = connect()
        self.assertEqual(
            third.execute(
                "SELECT count(*) FROM onboarding_sessions WHERE status = 'completed' AND id IN "
                "(?, ?, ?, ?)", sessions).fetchone(),
            (4,))
        third.close()

    def test_threads_loading_it_at_once_then_exiting_leave_the_process_whole(self):
        # Four threads open a connection each, load the extension at the
        # same moment, close and end, twenty times: the last close unloaded
        # the library, and the threads' exit ran destructors of Rust's
        # standard library that it had left pointing at unmapped code
        # (SIGSEGV, as Node's worker_threads met it). ctypes calls SQLite
        # without the GIL, so the loads run at once. In a process of its
        # own: a crash fails this test, not the whole run.
        script = """
import ctypes, sys, threading
lib = ctypes.CDLL("libsqlite3.so.0")
lib.sqlite3_open.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
lib.sqlite3_enable_load_extension.argtypes = [ctypes.c_void_p, ctypes.c_int]
lib.sqlite3_load_extension.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p,
                                       ctypes.POINTER(ctypes.c_char_p)]
lib.sqlite3_close.argtypes = [ctypes.c_void_p]
failed = []
def one(barrier):
    db = ctypes.c_void_p()
    lib.sqlite3_open(b":memory:", ctypes.byref(db))
    lib.sqlite3_enable_load_extension(db, 1)
    error = ctypes.c_char_p()
    barrier.wait()
    if lib.sqlite3_load_extension(db, sys.argv[1].encode(), None, ctypes.byref(error)) != 0:
        failed.append(error.value)
    lib.sqlite3_close(db)
for _ in range(20):
    barrier = threading.Barrier(4)
    threads = [threading.Thread(target=one, args=(barrier,)) for _ in range(4)]
    for t in threads: t.start()
    for t in threads: t.join()
print(len(failed), failed[:1])
"""
        run = subprocess.run([sys.executable, "-c", script, EXTENSION], capture_output=True,
                             text=True, timeout=120)
        self.assertEqual((run.returncode, run.stdout, run.stderr), (0, "0 []\n", ""))

    def test_a_database_deserialized_into_the_connection_is_onboarded_on(self):
        # A writer's call read the `pragma_database_list` table, whose
        # pointer to main's schema sqlite3_deserialize frees (SQLite's own
        # bug): the next writer's call after a deserialize crashed the host.
        # In a process of its own, as above.
        script = """
import sqlite3, sys
def loaded():
    c = sqlite3.connect(":memory:", isolation_level=None)
    c.enable_load_extension(True)
    c.load_extension(sys.argv[1])
    return c
image = loaded()
image.execute("SELECT onboarding_migrate()")
image = image.serialize()
c = loaded()
c.execute("SELECT onboarding_migrate()")
c.execute("SELECT onboarding_create()")
c.deserialize(image)
print(c.execute("SELECT onboarding_create() ->> '$.success'").fetchone()[0],
      c.execute("SELECT count(*) FROM onboarding_sessions").fetchone()[0])
"""
        run = subprocess.run([sys.executable, "-c", script, EXTENSION], capture_output=True,
                             text=True, timeout=120)
        self.assertEqual((run.returncode, run.stdout, run.stderr), (0, "1 1\n", ""))


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
