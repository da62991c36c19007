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

conn = sqlite3.connect(":memory:", isolation_level=None)
conn.enable_load_extension(True)
conn.load_extension(EXTENSION)
conn.enable_load_extension(False)
conn.execute("PRAGMA foreign_keys = ON")

names = {}


def mask(text):
    def ident(m):
        return names.setdefault(m.group(0), m.group(1) + "<id%d>" % (len(names) + 1))
    text = re.sub(r"\b(onb_|tenant_)[0-9a-f]{32}\b", ident, text)
    text = re.sub(r'"duration_(seconds|minutes)":\d+', r'"duration_\1":<\1>', text)
    return re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", "<timestamp>", text)


def run(sql, *args):
    try:
        (value,) = conn.execute(sql, args).fetchone()
        return str(value)
    except sqlite3.Error as e:
        return "error: " + str(e)


out = []


def example(sql, *args, show=None):
    shown = show or sql
    for a in args:
        shown = shown.replace("?", "'" + mask(a) + "'", 1)
    out.append("```sql\n" + shown + "\n```\n```text\n" + mask(run(sql, *args)) + "\n```\n")


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
