"""Writes docs/reference.md by running every example against libonboarding.so.

Usage: /usr/bin/python3 docs/reference.py dist/libonboarding.so > docs/reference.md

Ids, timestamps and phone codes differ on every run, so they are replaced by
stable placeholders (onb_<id1>, tenant_<id2>, ver_<id3>, <timestamp>, <seconds>,
<code>); the black-box test `reference_is_current` regenerates the page and
compares.
"""

import re
import sqlite3
import sys
import time

EXTENSION = sys.argv[1]

names = {}
# Phone codes seen so far (drawn at random): shown as <code>, <code2>, ...
codes = {}
# How a code read out digit by digit ("1, 2, 3, …") is shown, by its placeholder.
shown_spelled = {}


def mask(text):
    def ident(m):
        return names.setdefault(m.group(0), m.group(1) + "<id%d>" % (len(names) + 1))
    text = re.sub(r"\b(onb_|tenant_|ver_)[0-9a-f]{32}\b", ident, text)
    for code, shown in codes.items():
        text = text.replace(code, shown).replace(", ".join(code), shown_spelled.get(shown, shown))
    text = re.sub(r'"duration_(seconds|minutes)":\d+', r'"duration_\1":<\1>', text)
    return re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", "<timestamp>", text)


def connect():
    c = sqlite3.connect(":memory:", isolation_level=None)
    c.enable_load_extension(True)
    c.load_extension(EXTENSION)
    c.enable_load_extension(False)
    c.execute("PRAGMA foreign_keys = ON")
    return c


conn = connect()
# A database never migrated, for the functions' answers before migration.
empty = connect()


def run(sql, *args, on=None):
    try:
        (value,) = (on or conn).execute(sql, args).fetchone()
        return str(value)
    except sqlite3.Error as e:
        return "error: " + str(e)


out = []


def literal(sql, args):
    """`sql` with its parameters written in, as a reader would type it."""
    for a in args:
        sql = sql.replace("?", "'" + mask(a).replace("'", "''") + "'", 1)
    return sql


# The calls an example builds on that the page does not show as examples:
# written above that example's SQL, so the page runs top to bottom.
pending = []


def setup(sql, *args):
    answer = run(sql, *args)
    pending.append((literal(sql, args), answer))
    return answer


def statement(sql):
    """A set-up statement that answers no row: shown above the next example."""
    conn.execute(sql)
    pending.append((sql, ""))


def pause(seconds, comment):
    """Waits `seconds`, said above the next example by `comment`."""
    time.sleep(seconds)
    pending.append((comment, ""))


def before():
    if not pending:
        return ""
    lines = ["-- first (set up for what follows):"]
    for sql, answer in pending:
        answer = mask(answer)
        if sql.startswith("--"):
            lines.append(sql)
            continue
        lines.append(sql + ";" + ("  -- " + answer if answer and len(answer) <= 160 else ""))
    pending.clear()
    return "\n".join(lines) + "\n"


def example(sql, *args, show=None, on=None):
    setup_lines = before()
    shown = literal(show or sql, args)
    out.append("```sql\n" + setup_lines + shown + "\n```\n```text\n" + mask(run(sql, *args, on=on)) + "\n```\n")


def shown(sql, answer):
    """An example whose answer was read before (to learn the code it holds)."""
    out.append("```sql\n" + before() + sql + "\n```\n```text\n" + mask(answer) + "\n```\n")


def section(title, text):
    out.append("## " + title + "\n\n" + text + "\n")


out.append("# SQL function reference\n\n"
           "Every example below was run against `libonboarding.so` by "
           "`docs/reference.py`; ids and timestamps are shown as placeholders. "
           "Errors are raised as SQL errors whose text is "
           "`onboarding_<function>: <kind>: <detail>` (kinds: ARCHITECTURE.md).\n")

section("onboarding_migrate()", "Creates or upgrades the schema from `sql/`; returns the schema version. Idempotent.")
example("SELECT onboarding_migrate()")
example("SELECT onboarding_migrate()")

section("onboarding_schema_version()",
        "The schema version applied to the database: what `onboarding_migrate()` last "
        "returned, or 0 when it never ran. Reads only (it creates nothing), for health "
        "checks.")
example("SELECT onboarding_schema_version()", on=empty,
        show="-- on a database never migrated\nSELECT onboarding_schema_version()")
example("SELECT onboarding_schema_version()",
        show="-- after onboarding_migrate()\nSELECT onboarding_schema_version()")

section("onboarding_version()", "The library's version.")
example("SELECT onboarding_version()")

section("onboarding_create(payload)",
        "A new tenant (temporary name, unique placeholder email, random temporary API key), "
        "its session and its analytics row. `payload` may be omitted or NULL; it may carry "
        "`source`, `ip_address`, `user_agent`.")
example("SELECT onboarding_create(?)", '{"source":"web","ip_address":"203.0.113.7"}')
session = conn.execute("SELECT id FROM onboarding_sessions").fetchone()[0]
example("SELECT onboarding_create(?)", '{"ip_address":"localhost"}')
example("SELECT onboarding_create(?)", '{"source":')

section("onboarding_create(payload, ip_address, user_agent)",
        "The same, for a host that knows its client (a server and its peer). Each "
        "argument given (not NULL) replaces the payload's field, which is then not read. "
        "`ip_address` must be an IPv4 or IPv6 address. `user_agent` is the raw header: "
        "control characters are dropped, blanks trimmed, the rest cut to 512 characters, "
        "and NULL is stored when nothing is left: no text is refused (a number is "
        "`invalid_field`). Pass `''` for a "
        "request without a User-Agent, so that the payload's claim is dropped too.")
example("SELECT onboarding_create(?, ?, ?)",
        '{"source":"web","ip_address":"198.51.100.9","user_agent":"claimed"}',
        "203.0.113.7", " Mozilla/5.0 (X11; Linux x86_64) ")
example("SELECT ip_address || ' | ' || user_agent FROM onboarding_sessions ORDER BY rowid DESC LIMIT 1")
example("SELECT onboarding_create(?, ?, ?)", "{}", "localhost", "curl/8.0")

section("onboarding_create(payload, ip_address, user_agent, request_key)",
        "The same, at most once per `request_key` (16 to 128 characters): a second call "
        "with a key already used answers the first session again and writes nothing. "
        "For a host whose commit can have an unknown outcome, such as a server on a "
        "dqlite cluster whose leader dies before answering: it runs the create again with "
        "the same key. The key is kept in `onboarding_create_requests` with the SHA-256 of "
        "the payload as sent: the same key with another payload is no retry, and answers "
        "`conflict` (the address and user agent are the transport's, not compared).")
example("SELECT onboarding_create(?, ?, ?, ?)", "{}", "203.0.113.7", "curl/8.0", "req-5f0c2b8e41d7a396")
example("SELECT onboarding_create(?, ?, ?, ?)", "{}", "203.0.113.7", "curl/8.0", "req-5f0c2b8e41d7a396")
example("SELECT count(*) FROM onboarding_create_requests")
example("SELECT onboarding_create(?, ?, ?, ?)", '{"source":"partner"}', "203.0.113.7", "curl/8.0",
        "req-5f0c2b8e41d7a396",
        show="-- the same key with another payload\nSELECT onboarding_create(?, ?, ?, ?)")
example("SELECT onboarding_create(?, ?, ?, ?)", "{}", "203.0.113.7", "curl/8.0", "short")

section("onboarding_create_kept(payload, request_key)",
        "The answer of the create that `request_key` made with this payload, read without "
        "creating anything (NULL when no create used the key; `conflict` when one did with "
        "another payload, as the create answers). For a host that refuses a create, such as "
        "`onboarding-server` past an address's create limit: a create retried with its key, "
        "whose first answer was lost, is still answered its session.")
example("SELECT onboarding_create_kept(?, ?)", "{}", "req-5f0c2b8e41d7a396")
example("SELECT onboarding_create_kept(?, ?) IS NULL", "{}", "req-never-used-0001")
example("SELECT onboarding_create_kept(?, ?)", '{"source":"partner"}', "req-5f0c2b8e41d7a396")

section("onboarding_step(session_id, step, payload)",
        "Validates and saves one step: `business`, `channels`, `vapi`, `kb` or "
        "`appointments`. Progress never goes backwards. The `appointments` step is optional: "
        "saving it says the tenant takes appointments (its booking settings are kept on the "
        "tenant, and completion creates an active campaign); `{\"enabled\": false}` says "
        "the opposite and clears the booking settings. A provider or an event type id set on the "
        "tenant directly (before or after the step) makes completion create the campaign too.")
example("SELECT onboarding_step(?, 'business', ?)", session,
        '{"company_name":"Mon Entreprise","industry":"Immobilier","phone":"06 12 34 56 78","email":"contact@entreprise.fr"}')
example("SELECT onboarding_step(?, 'business', ?)", session,
        '{"company_name":"Mon Entreprise","industry":"Immobilier","phone":"06 12","email":"contact@entreprise.fr"}')
example("SELECT onboarding_step(?, 'channels', ?)", session, '{"channels":["phone","sms"]}')
example("SELECT onboarding_step(?, 'channels', ?)", session, '{"channels":["fax"]}')
example("SELECT onboarding_step(?, 'vapi', ?)", session,
        '{"agent_type":"multi_purpose","voice":"sara","assistant_name":"Sara"}')
example("SELECT onboarding_step(?, 'vapi', ?)", session,
        '{"agent_type":"multi_purpose","voice":"sara","assistant_name":""}')
example("SELECT onboarding_step(?, 'kb', ?)", session, '{"crawl_url":"https://mon-site.fr","method":"website"}')
example("SELECT onboarding_step(?, 'kb', ?)", session, '{"method":"website"}')
example("SELECT onboarding_step(?, 'appointments', ?)", session, '{"enabled":false}')
example("SELECT onboarding_step(?, 'appointments', ?)", session, '{"enabled":false,"event_type_id":123456}')
example("SELECT onboarding_step(?, 'appointments', ?)", session,
        '{"provider":"cal_com","event_type_id":123456,"timezone":"Europe/Paris"}')
example("SELECT onboarding_step(?, 'appointments', ?)", session, '{"provider":"cal_com","event_type_id":1,"timezone":"Paris"}')
example("SELECT onboarding_step(?, 'kb', ?)", "onb_unknown", '{"method":"skip"}')

section("onboarding_complete(session_id, payload), onboarding_complete(session_id)",
        "Checks the session is complete enough, syncs it into the omnichannel tables, "
        "marks it done (the one-argument form is the same with an empty payload). A retry answers the first result again with "
        "`\"already_completed\":true` and writes nothing.")
other = setup("SELECT onboarding_create()")
other_id = re.search(r"onb_[0-9a-f]{32}", other).group(0)
example("SELECT onboarding_complete(?, '{}')", other_id)
example("SELECT onboarding_complete(?)", other_id)
example("SELECT onboarding_complete(?, '{}')", session)
example("SELECT onboarding_complete(?, '{}') ->> '$.already_completed'", session)
example("SELECT onboarding_step(?, 'kb', ?)", session, '{"method":"skip"}')

section("onboarding_get(session_id)",
        "The whole state of a session; after completion, the rows the sync wrote.")
example("SELECT onboarding_get(?)", other_id)
example("SELECT onboarding_get(?)", session)
example("SELECT onboarding_get(?)", "onb_unknown")

section("onboarding_phone_send(session_id, payload)",
        "Sends a one-time code to the business step's phone: 6 digits from the "
        "cryptographic source, valid 10 minutes, stored only as an HMAC-SHA-256 under the "
        "database's secret. `payload` may be NULL or `{\"channel\":\"sms\"|\"voice\"}`; "
        "the default is `sms` for a mobile, `voice` for a fixed or toll-free line (which takes "
        "no SMS). French numbers only (+33 and the overseas departments), mobile, fixed and "
        "toll-free lines (not a shared-cost or premium-rate 08 number). The message goes to the "
        "outbox for an SMS/voice sender; each send first expires the unsent messages past "
        "their time, blanking their text, as a claim does. A send within the code's validity is a resend: a "
        "new code for the same verification. Limits: sends 60 s apart, 5 per verification, "
        "10 per number per 24 hours across tenants, 10 per session per 24 hours whatever "
        "its numbers; past one, `rate_limited` ending with "
        "`(retry after N s)`, the longest wait of the limits that refuse; `resend_after` "
        "is the earliest next send by the limits. Before or after completion. A number the "
        "session verified is `conflict`, unless, after completion, its mapping is inactive "
        "while no tenant routes it (released by the runtime or an operator, or another tenant "
        "routed it first): a new code then routes it here again. "
        "`onboarding_phone_send(session_id, payload, ip_address)` also keeps the host's "
        "client address.")
example("SELECT onboarding_phone_send(?, NULL)", session)
example("SELECT onboarding_phone_send(?, NULL)", session)
example("SELECT onboarding_phone_send(?, ?)", other_id, '{"channel":"sms"}')

section("onboarding_outbox_claim(worker, lease_seconds)",
        "For an SMS/voice sender: expires what is past its time, then leases the oldest "
        "message that is queued, or whose lease ran out (a sender that crashed), to "
        "`worker` for `lease_seconds` (1 to 3600), or until the message expires if that "
        "comes first: a sender must not send once its lease has run out. "
        "`\"message\":null` when there is none. A message past its expiry is never handed "
        "out. A message whose code stopped counting (a new code, the code used, the phone "
        "changed) is withdrawn: its text is blanked; a queued one is `cancelled`, while one "
        "a sender holds stays that sender's to report, and is `cancelled` should its lease "
        "run out first.")
claimed = run("SELECT onboarding_outbox_claim('sms-gateway-1', 60)")
code = re.search(r": (\d{6})\.", claimed).group(1)
codes[code] = "<code>"
shown("SELECT onboarding_outbox_claim('sms-gateway-1', 60)", claimed)
example("SELECT onboarding_outbox_claim('sms-gateway-1', 0)")

section("onboarding_outbox_sent(id, worker, provider_id)",
        "The sender holding message `id` delivered it; `provider_id` (the SMS provider's "
        "id, may be NULL) is kept as it came, never refused (a refused report would leave the "
        "message leased, to go out again): any SQL type as text, as one line, cut to 128 "
        "characters with `…` past that, NULL for an empty one. The text, which holds the code, "
        "is blanked. "
        "Reported after the message's expiry (when its lease ended), it is `conflict`, and "
        "the message expires then, its text blanked: a message is never sent after its "
        "expiry.")
example("SELECT onboarding_outbox_sent(1, 'sms-gateway-1', 'SM87a3f0')")
example("SELECT onboarding_outbox_sent(1, 'sms-gateway-1', 'SM87a3f0')")
example("SELECT status || ' | ' || quote(text) FROM outbox_messages WHERE id = 1")

section("onboarding_outbox_failed(id, worker, error)",
        "The sender holding message `id` gave up on it: the error is kept and the text "
        "blanked. The error may be a provider's as it came: it is kept as one line (line "
        "breaks and other control characters as spaces; a number as text), cut to 500 "
        "characters with `…` past that, `(no error text)` for an empty one or NULL. To try "
        "again instead, a sender lets the "
        "lease run out.")
fixed = re.search(r"onb_[0-9a-f]{32}", setup("SELECT onboarding_create()")).group(0)
setup("SELECT onboarding_step(?, 'business', ?)", fixed,
    '{"company_name":"Cabinet Martin","industry":"Notaire","phone":"01 42 68 53 00","email":"accueil@cabinet-martin.fr"}')
example("SELECT onboarding_phone_send(?, NULL)", fixed,
        show="-- a fixed line (01 42 68 53 00): a call by default\nSELECT onboarding_phone_send(?, NULL)")
voice = run("SELECT onboarding_outbox_claim('voice-gateway', 60)")
codes[re.search(r"est : ((?:\d, ){5}\d)\.", voice).group(1).replace(", ", "")] = "<code2>"
# Read out on a call, the code's digits are written one by one.
shown_spelled["<code2>"] = "<d1>, <d2>, <d3>, <d4>, <d5>, <d6>"
shown("SELECT onboarding_outbox_claim('voice-gateway', 60)", voice)
example("SELECT onboarding_outbox_failed(2, 'voice-gateway', 'number unreachable')")
example("SELECT onboarding_outbox_failed(2, 'voice-gateway', 'number unreachable')")

section("onboarding_phone_verify(session_id, payload)",
        "Checks `{\"code\":\"123456\"}` against the session's verification, in constant "
        "time; a code typed as it was read out (`12 34 56`, `123-456`) or in full-width "
        "digits is read as its six digits. A wrong code counts even though the call fails (it says how many tries are "
        "left); after 5 the verification is locked (`conflict`: send a new code). An "
        "expired, used or cancelled (the business phone changed) verification is "
        "`conflict`. A right code verifies the number once: after completion the tenant's "
        "phone mapping becomes `verified` and active, unless another tenant has the number "
        "active (`is_active:false` and the `reason`); before completion, completion does it.")
wrong = "000000" if code != "000000" else "000001"
codes[wrong] = "<another code>"
example("SELECT onboarding_phone_verify(?, ?)", session, '{"code":"%s"}' % wrong)
example("SELECT onboarding_phone_verify(?, ?)", session, '{"code":"%s"}' % code)
example("SELECT onboarding_phone_verify(?, ?)", session, '{"code":"%s"}' % code)
example("SELECT onboarding_phone_verify(?, ?)", session, '{"code":"12345"}')
example("SELECT tenant_id FROM omni_phone_mappings WHERE phone_number = '+33612345678' AND is_active = 1",
        show="-- the runtime's lookup now finds the tenant\n"
             "SELECT tenant_id FROM omni_phone_mappings WHERE phone_number = '+33612345678' AND is_active = 1")
example("SELECT onboarding_get(?) ->> '$.phone_verification'", session)

section("onboarding_step(session_id, step, payload, request_key), onboarding_complete(session_id, payload, request_key), onboarding_phone_send(session_id, payload, ip_address, request_key), onboarding_phone_verify(session_id, payload, request_key)",
        "The calls that are not safe to run twice, at most once per `request_key` (16 to 128 "
        "characters), for a host whose commit can have an unknown outcome (a server on a dqlite "
        "cluster whose leader dies before answering runs its calls again with the same keys). "
        "Run again with its key, a call answers what it answered the first time and writes "
        "nothing: a step answers its own progress (not that of a later step, nor `conflict` "
        "after the completion), a code sent is not sent again, a wrong code counts once, a right "
        "one and a completion answer as they did. The answer is kept in "
        "`onboarding_call_replies`, in the transaction of the call's writes, for a day (older, "
        "it answers for nothing: the call runs as a new one); a call "
        "that failed and wrote nothing keeps nothing. A key is one call (one step) of one "
        "session, with one payload (its SHA-256 is kept with the answer, the payload as sent): "
        "used by another call, another session or with another payload, `conflict`, "
        "writing nothing.")
keyed = re.search(r"onb_[0-9a-f]{32}", setup("SELECT onboarding_create()")).group(0)
business = ('{"company_name":"Agence du Port","industry":"Immobilier","phone":"07 11 22 33 44",'
            '"email":"port@agence-du-port.fr"}')
example("SELECT onboarding_step(?, 'business', ?, ?)", keyed, business, "req-5c0a2e94b7d1f368")
example("SELECT onboarding_step(?, 'vapi', ?, ?)", keyed, business, "req-5c0a2e94b7d1f368",
        show="-- the same key for another step: the host's mistake\n"
             "SELECT onboarding_step(?, 'vapi', ?, ?)")
example("SELECT onboarding_step(?, 'business', ?, ?)", keyed, business.replace("07 11 22 33 44", "07 11 22 33 45"),
        "req-5c0a2e94b7d1f368",
        show="-- the same key with another payload: refused, not answered as saved\n"
             "SELECT onboarding_step(?, 'business', ?, ?)")
example("SELECT onboarding_phone_send(?, NULL, '203.0.113.7', ?)", keyed, "req-9b1e4c27d05a8f36")
example("SELECT onboarding_phone_send(?, NULL, '203.0.113.7', ?)", keyed, "req-9b1e4c27d05a8f36",
        show="-- the same call again, as after a lost answer\nSELECT onboarding_phone_send(?, NULL, '203.0.113.7', ?)")
example("SELECT onboarding_phone_send(?, NULL)", keyed,
        show="-- without a key: another send, 60 s too early\nSELECT onboarding_phone_send(?, NULL)")
example("SELECT onboarding_phone_verify(?, ?, ?)", keyed, '{"code":"%s"}' % wrong, "req-2d7f90a1c3e6b845")
example("SELECT onboarding_phone_verify(?, ?, ?)", keyed, '{"code":"%s"}' % wrong, "req-2d7f90a1c3e6b845")
example("SELECT attempts FROM phone_verifications WHERE session_id = ?", keyed)
example("SELECT group_concat(function || ' ' || failed, ', ') FROM onboarding_call_replies")
example("SELECT onboarding_complete(?, '{}', ?)", keyed, "req-9b1e4c27d05a8f36")
example("SELECT onboarding_complete(?, '{}', ?)", keyed, "short")

section("onboarding_step_kept(session_id, step, payload, request_key)",
        "The answer of the step that `request_key` saved with this payload, read without "
        "saving anything (NULL when no step kept an answer under the key; `conflict` when the "
        "key was used by another call or with another payload, as the keyed step answers). "
        "For a host that refuses a step, such as `onboarding-server` past its limits on "
        "\"email already used\" answers: a business step retried with its key, whose first "
        "answer was lost, is still answered what it saved.")
example("SELECT onboarding_step_kept(?, 'business', ?, ?)", keyed, business, "req-5c0a2e94b7d1f368")
example("SELECT onboarding_step_kept(?, 'business', ?, ?) IS NULL", keyed, business, "req-never-used-0002")
example("SELECT onboarding_step_kept(?, 'kb', '{\"method\":\"skip\"}', ?)", keyed, "req-5c0a2e94b7d1f368")

section("onboarding_agent_types()", "The 7 agent types.")
example("SELECT onboarding_agent_types()")

section("onboarding_voices()", "The voice catalogue, labelled truthfully.")
example("SELECT onboarding_voices()")

section("The knowledge base",
        "The kb step's `website` method queues a crawl job at completion; a crawler worker "
        "(`onboarding-server`, or `onboarding-server crawl --db FILE`) takes it through the "
        "worker functions below and stores the site's pages. The `documents` method stores "
        "1 to 20 documents (`title` 1–200 characters, `content` 1–200,000) at completion, "
        "each item a document of its own (a crawl stores a text once per tenant; two pasted "
        "items with the same text are two documents). A `crawl_url` must reach a public "
        "address on port 80 or 443, except the `HOST:PORT` entries (comma-separated) of the "
        "`ONBOARDING_CRAWL_ALLOW_HOST` environment variable of the process that loaded the "
        "extension, for tests and intranets, as the server's `--crawl-allow-host` (whose "
        "variable it is); a value that is not such a list refuses the load.")
docs_session = re.search(r"onb_[0-9a-f]{32}", setup("SELECT onboarding_create()")).group(0)
setup("SELECT onboarding_step(?, 'business', ?)", docs_session,
    '{"company_name":"Salon Léa","industry":"Coiffure","phone":"04 78 00 00 00","email":"lea@salon-lea.fr"}')
setup("SELECT onboarding_step(?, 'channels', ?)", docs_session, '{"channels":["sms"]}')
example("SELECT onboarding_step(?, 'kb', ?)", docs_session,
        '{"method":"documents","documents":[{"title":"Horaires","content":"# Horaires\\n\\n| Jour | Heures |\\n|---|---|\\n| Samedi | 9h00 – 18h00 |"},'
        '{"title":"Tarifs","content":"# Tarifs\\n\\n| Prestation | Prix |\\n|---|---|\\n| Coupe homme | 25 € |"}]}')
example("SELECT onboarding_step(?, 'kb', ?)", docs_session, '{"method":"documents","documents":[{"title":"","content":"x"}]}')
example("SELECT onboarding_step(?, 'kb', ?)", docs_session, '{"method":"website","crawl_url":"http://[::ffff:127.0.0.1]/"}')

section("onboarding_kb_prepare(session_id)",
        "Stores the first of the kb step's pasted documents (method `documents`) that the "
        "tenant's knowledge lacks, chunked and indexed as the completion would store it, and "
        "answers which (`item`, from 0), with its `document_id` and `chunks`; "
        "`\"prepared\":null` when none is left (or the step lists none, the session lacks a "
        "step its completion needs, or it is completed). The completion then finds those "
        "documents stored, counts them and answers as it would have alone. The kb step "
        "saved again removes every document prepared ahead (a list changed since must not "
        "stay searchable), and the completion removes any it does not list. For a host that must not spend seconds in one call: "
        "`onboarding-server --dqlite` calls it until it answers null, in a savepoint of the "
        "completion's transaction that the completion's failure rolls back (a dqlite leader "
        "sends no Raft heartbeat while it runs a call). An abandoned session is `conflict`, "
        "an unknown one `not_found`.")
example("SELECT onboarding_kb_prepare(?)", docs_session)
example("SELECT onboarding_kb_prepare(?)", docs_session)
example("SELECT onboarding_kb_prepare(?)", docs_session)
example("SELECT onboarding_kb_prepare(?)", "onb_00000000000000000000000000000000")

section("onboarding_kb_claim(payload)",
        "A worker takes the oldest due job with a lease of `lease_seconds` (1–3600, default 60) "
        "from now: a queued "
        "job whose backoff is over, or a running one whose lease expired (its worker died). "
        "The answer carries the job's frontier: its pages not yet reported, breadth first, each "
        "with the `retries` it had before the job last waited for its site (see "
        "`onboarding_kb_release`). "
        "`{\"job\":null}` when nothing is due. After 3 attempts a job whose lease expires ends "
        "with `timeout`: `done` with the pages it stored, else `failed`.")
example("SELECT onboarding_kb_claim(?)", '{"worker":"crawler-1","lease_seconds":60}')
example("SELECT onboarding_kb_claim(?)", '{"worker":"crawler-2"}')
example("SELECT onboarding_kb_claim(?)", '{}')

section("onboarding_kb_store_page(payload)",
        "Reports one page of the frontier: `status` `stored` (with `title`, `markdown`), "
        "`skipped` or `failed` (with a `reason`), the page's `links`, an optional `final_url` "
        "(a redirect or canonical link inside the site) and `shared` blocks (a footer repeated "
        "on every page, stored once as its own document). The library normalises the URLs, "
        "keeps the site's links (depth at most 3, at most 50 pages), stores a text once per "
        "tenant, chunks and indexes it, updates the counters and sets the lease to `lease_seconds` "
        "from now (1–3600, default 60, whatever the claim asked: a worker holding longer leases "
        "passes its length to every call), in one savepoint. "
        "A stored page's Markdown is not blank; its texts (title, Markdown, the blocks') hold no control "
        "character but line breaks and tabs (SQLite's own functions would read a text only to a NUL).")
example("SELECT onboarding_kb_store_page(?)",
        '{"job_id":1,"worker":"crawler-1","url":"https://mon-site.fr/","status":"stored","title":"Accueil",'
        '"markdown":"# Agence\\n\\nVotre agence immobilière à Lyon.\\n\\n## Horaires\\n\\nDu lundi au samedi, 9h – 19h.",'
        '"links":["https://mon-site.fr/biens?utm_source=x","https://www.mon-site.fr/contact/","https://ailleurs.fr/"],'
        '"shared":[{"title":"Pied de page","markdown":"12 rue de la République, 69002 Lyon"}]}')
example("SELECT onboarding_kb_store_page(?)",
        '{"job_id":1,"worker":"crawler-1","url":"https://mon-site.fr/biens","status":"failed","reason":"http_500"}')
example("SELECT onboarding_kb_store_page(?)",
        '{"job_id":1,"worker":"crawler-2","url":"https://www.mon-site.fr/contact","status":"skipped","reason":"robots_disallowed"}')
example("SELECT onboarding_kb_store_page(?)",
        '{"job_id":1,"worker":"crawler-1","url":"https://mon-site.fr/equipe","status":"stored","title":"Équipe","markdown":"Notre équipe\\u0000"}')

section("onboarding_kb_renew(payload)", "Extends a held lease (during a long wait, a `Retry-After`) "
        "to `lease_seconds` from now (1–3600, default 60, as `onboarding_kb_store_page`). "
        "Optional `bytes` and `elapsed_ms` (also taken by `onboarding_kb_store_page`): the job's budget "
        "spent so far as the worker counts it, kept with the job (the larger count) and given by the "
        "next claim as `bytes_fetched` and `crawl_ms`, so that a worker taking the job over goes on "
        "from there: the 20 MiB and 3 minutes are the job's. Optional `url` and `retries` (1–2), given "
        "together: a pending page the site refused (429 or 503 with a short `Retry-After`) that the "
        "worker retries in hand, and the retries it has had, the one it is about to wait for included; "
        "kept with the page before the wait (never lowered) and given by the next claim's frontier, so "
        "that a worker taking the job over after a crash goes on counting. A `url` that is not a page "
        "of the job is `invalid_field`; a page already reported is `conflict`.")
example("SELECT onboarding_kb_renew(?)", '{"job_id":1,"worker":"crawler-1","lease_seconds":60,"bytes":48213,"elapsed_ms":21500}')

section("onboarding_kb_release(payload)",
        "Gives back the jobs a worker holds and will not finish, because its process is stopping "
        "(every one, or only `job_id`): queued again at once for the next claim, the attempt each "
        "was on not counted (a stop is no failure of the site), their frontier and stored pages "
        "kept. Without it a job waits for its lease to run out, and the takeover counts as an "
        "attempt. By worker, so that a claim sent just before the stop is given back too. A "
        "`job_id` the worker does not hold is `conflict`. The server and `onboarding-server "
        "crawl` give their workers' jobs back when they stop.\n\n"
        "With `wait_ms` (1–3600000), job `job_id` waits for its site instead: its site asked the "
        "crawler to wait (429 or 503 with a `Retry-After`) longer than the job can wait in hand "
        "(past 120 s, or past the rest of its 3 minutes). It is queued, claimed again no sooner "
        "than `wait_ms` from now (`next_attempt_at`), the attempt not counted, an earlier "
        "attempt's error cleared when a page was refused; at most 5 times per job (then "
        "`conflict`, and nothing changes). `url` and `retries` (1–2), when given, are the "
        "pending page the site refused and the retries it has had, the one it waits for "
        "included: kept with the page (never lowered), and given by the next claim's frontier, "
        "so that the page is retried twice at most across the job's waits. "
        "Optional `bytes` and `elapsed_ms`, the job's budget, as with `onboarding_kb_renew`.")
example("SELECT onboarding_kb_release(?)", '{"job_id":1,"worker":"crawler-2"}')
example("SELECT onboarding_kb_release(?)", '{"worker":"crawler-1"}')
setup("SELECT onboarding_kb_claim(?)", '{"worker":"crawler-1","lease_seconds":60}')
example("SELECT onboarding_kb_release(?)", '{"job_id":1,"worker":"crawler-1","url":"https://mon-site.fr/biens"}')
example("SELECT onboarding_kb_release(?)", '{"job_id":1,"worker":"crawler-1","wait_ms":5,"elapsed_ms":23000}')
# Its wait shown too: typed at once, the claim below would find the job
# still waiting.
pause(0.01, "-- 5 ms later (the job's wait_ms), or the claim finds the job still waiting:")
setup("SELECT onboarding_kb_claim(?)", '{"worker":"crawler-1","lease_seconds":60}')

section("onboarding_kb_finish(payload)",
        "Ends a job. With `error_code` `dns`, `unreachable` or `robots_unavailable` and fewer "
        "than 3 attempts, the job goes back to the queue after a backoff (60 s, then 300 s); "
        "otherwise it is `done` when pages were stored, else `failed`. Pages not fetched are "
        "reported `not_fetched`. A job that ends `done` has the blocks its site repeats on most "
        "of its pages (at least 3, and more than half: an address or opening hours written in "
        "plain blocks) lifted out of the pages and stored once, as their own document "
        "(`Informations pratiques`).")
example("SELECT onboarding_kb_finish(?)", '{"job_id":1,"worker":"crawler-1","error_code":"oops"}')
example("SELECT onboarding_kb_finish(?)", '{"job_id":1,"worker":"crawler-1","error_code":null}')

section("onboarding_kb_site_take(payload)",
        "Takes the turn of a URL's site (the host without `www.`, and its port when not 80 or "
        "443) for `worker`, for `hold_seconds` at most (1–3600, default 30; the crawler takes a turn for each request, redirect hops included, and holds it for one request's limits, 35 s; a holder taking its own turn again extends its hold), when nobody holds it "
        "and the last request's gap has passed. Otherwise `granted` is false, nothing is written, "
        "and `retry_after_ms` says when to ask again (after a clock set back, the hold and the "
        "gap start again from then, whole: written so, and never stretched by the time the "
        "clock went back). Every crawler on the file takes turns "
        "through it: one request at a time per site, across processes.")
example("SELECT onboarding_kb_site_take(?)", '{"url":"https://www.mon-site.fr/biens","worker":"crawler-1","hold_seconds":30}')
example("SELECT onboarding_kb_site_take(?)", '{"url":"https://mon-site.fr/contact","worker":"crawler-2"}')
example("SELECT onboarding_kb_site_take(?)", '{"url":"ftp://mon-site.fr/","worker":"crawler-2"}')

section("onboarding_kb_site_release(payload)",
        "Gives the turn back once the response is read: the next request to the site may start "
        "`gap_ms` later (0–3600000, default 1000; the crawler passes its delay, robots' "
        "`Crawl-delay` included, or a 429's `Retry-After`, up to an hour). A worker that does not "
        "hold the turn is `conflict`.")
example("SELECT onboarding_kb_site_release(?)", '{"url":"https://www.mon-site.fr/biens","worker":"crawler-1","gap_ms":1000}')
example("SELECT onboarding_kb_site_release(?)", '{"url":"https://www.mon-site.fr/biens","worker":"crawler-1","gap_ms":1000}')

section("onboarding_kb_get(session_id)",
        "The crawl job (status, counters, error code), the documents (URL, title, source, depth, "
        "chunk count) and the pages not stored with their reasons.")
example("SELECT onboarding_kb_get(?)", session)
setup("SELECT onboarding_complete(?, '{}')", docs_session)
example("SELECT onboarding_kb_get(?)", docs_session)

section("onboarding_kb_search(payload)",
        "bm25-ranked chunks of a tenant's knowledge for a question in French (`session_id` or "
        "`tenant_id`, both only when they agree, `query` of 1–500 characters, `limit` 1–20, "
        "default 5): accents and "
        "ligatures folded (decomposed text, a letter then its combining accent, is read composed, "
        "page and question alike), French stems, stop words and a few synonyms applied in Rust on both "
        "sides (a question typed without accents finds the accented words: \"mariee\" finds "
        "\"mariée\"); `score` is higher for better matches. Scores are BM25 over the tenant's own "
        "chunks (its statistics alone: another tenant's knowledge changes neither a score nor "
        "the order); the title and headings are indexed with the text and again on their own, "
        "where a match counts double.")
example("SELECT onboarding_kb_search(?)", '{"session_id":"%s","query":"vous êtes ouverts le samedi ?","limit":1}' % docs_session)
example("SELECT onboarding_kb_search(?)", '{"session_id":"%s","query":"c\'est combien une coupe homme ?","limit":1}' % docs_session)
example("SELECT onboarding_kb_search(?)", '{"session_id":"%s","query":"agence à Lyon","limit":2}' % session)
example("SELECT onboarding_kb_search(?)", '{"session_id":"%s","query":" "}' % session)

section("onboarding_kb_recut()",
        "Cuts again the first document whose chunks were made by an older chunker or French "
        "analysis than this library's (its `cut`, kept with each document since migration 013, "
        "is under the library's; every document stored before 013 is), as storing it now "
        "would: only the chunks and index entries that differ are written (rewritten in place, "
        "added or dropped; `kept` counts the others). Answers the document, its chunks before "
        "and after, how many documents are left (`remaining`, counted up to 1,000) and how many "
        "wait after a failure (`failing`, also up to 1,000); `\"recut\":null` and "
        "`\"failed\":null` when none is left, so a client calls it again while either is not "
        "null. One document a call, so that no call is long: the server's crawler calls it "
        "whenever it has no job, and `onboarding-server crawl --once` until none is left. A "
        "document whose cut fails (its writes undone, its older chunks kept) is answered in "
        "`failed`, recorded in `kb_recut_failures` (migration 014) and passed over for an hour, "
        "so that the next call goes on with the next document; inside a caller's transaction, a "
        "failure that ends it (`RAISE(ROLLBACK)`, an I/O error) is not recorded, but is the "
        "call's error, naming the document. A document of a later cut (stored by a newer library) is left alone.")
# The documents as a library before migration 013 left them, and a host's
# trigger that refuses the second one's cut.
statement("UPDATE kb_documents SET cut = 0")
statement("CREATE TEMP TRIGGER refuse_second AFTER UPDATE OF cut ON kb_documents "
          "WHEN NEW.id = 2 BEGIN SELECT RAISE(ABORT, 'refused by a trigger of the host'); END")
example("SELECT onboarding_kb_recut()")
example("SELECT onboarding_kb_recut()")
example("SELECT onboarding_kb_recut()")
example("SELECT onboarding_kb_recut()")

sys.stdout.write("\n".join(out))
