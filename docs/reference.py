"""Writes docs/reference.md by running every example against libonboarding.so.

Usage: /usr/bin/python3 docs/reference.py dist/libonboarding.so > docs/reference.md

Ids and timestamps differ on every run, so they are replaced by stable
placeholders (onb_<id1>, tenant_<id2>, <timestamp>, <seconds>); the black-box test
`reference_is_current` regenerates the page and compares.
"""

import re
import sqlite3
import sys

EXTENSION = sys.argv[1]

names = {}


def mask(text):
    def ident(m):
        return names.setdefault(m.group(0), m.group(1) + "<id%d>" % (len(names) + 1))
    text = re.sub(r"\b(onb_|tenant_)[0-9a-f]{32}\b", ident, text)
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


def example(sql, *args, show=None, on=None):
    shown = show or sql
    for a in args:
        shown = shown.replace("?", "'" + mask(a) + "'", 1)
    out.append("```sql\n" + shown + "\n```\n```text\n" + mask(run(sql, *args, on=on)) + "\n```\n")


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
        "and NULL is stored when nothing is left; it is never refused. Pass `''` for a "
        "request without a User-Agent, so that the payload's claim is dropped too.")
example("SELECT onboarding_create(?, ?, ?)",
        '{"source":"web","ip_address":"198.51.100.9","user_agent":"claimed"}',
        "203.0.113.7", " Mozilla/5.0 (X11; Linux x86_64) ")
example("SELECT ip_address || ' | ' || user_agent FROM onboarding_sessions ORDER BY rowid DESC LIMIT 1")
example("SELECT onboarding_create(?, ?, ?)", "{}", "localhost", "curl/8.0")

section("onboarding_step(session_id, step, payload)",
        "Validates and saves one step: `business`, `channels`, `vapi`, `kb` or "
        "`appointments`. Progress never goes backwards.")
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
example("SELECT onboarding_step(?, 'appointments', ?)", session,
        '{"provider":"cal_com","event_type_id":123456,"timezone":"Europe/Paris"}')
example("SELECT onboarding_step(?, 'appointments', ?)", session, '{"provider":"cal_com","event_type_id":1,"timezone":"Paris"}')
example("SELECT onboarding_step(?, 'kb', ?)", "onb_unknown", '{"method":"skip"}')

section("onboarding_complete(session_id, payload)",
        "Checks the session is complete enough, syncs it into the omnichannel tables, "
        "marks it done. A retry answers the first result again with "
        "`\"already_completed\":true` and writes nothing.")
other = run("SELECT onboarding_create()")
other_id = re.search(r"onb_[0-9a-f]{32}", other).group(0)
example("SELECT onboarding_complete(?, '{}')", other_id)
example("SELECT onboarding_complete(?, '{}')", session)
example("SELECT onboarding_complete(?, '{}') ->> '$.already_completed'", session)
example("SELECT onboarding_step(?, 'kb', ?)", session, '{"method":"skip"}')

section("onboarding_get(session_id)",
        "The whole state of a session; after completion, the rows the sync wrote.")
example("SELECT onboarding_get(?)", other_id)
example("SELECT onboarding_get(?)", session)
example("SELECT onboarding_get(?)", "onb_unknown")

section("onboarding_agent_types()", "The 7 agent types.")
example("SELECT onboarding_agent_types()")

section("onboarding_voices()", "The voice catalogue, labelled truthfully.")
example("SELECT onboarding_voices()")

sys.stdout.write("\n".join(out))
