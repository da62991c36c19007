"""The OpenAPI document's string patterns against the built libonboarding.so.

Usage: /usr/bin/python3 openapi_phone.py PATH/TO/libonboarding.so PATH/TO/openapi.json DB_PATH

A tool that draws bodies from the document (schemathesis, a form generator)
sends whatever a pattern matches: every number the phone pattern matches must
be one the business step takes, saved in E.164, and one the phone
verification sends a code to by SMS and by call, or the tool's valid request
comes back 422. Python's `re` reads the document's patterns as ECMA-262
does (classes, `\\uXXXX` escapes).
"""

import json
import re
import sqlite3
import sys
import unittest

import extension

EXTENSION, OPENAPI, DB_PATH = sys.argv[1], sys.argv[2], sys.argv[3]

# The mobile blocks' three-digit prefixes that +33 and a French 0 never
# start: the overseas departments' (their numbers are +262, +590, +594,
# +596) and 0700.
OTHER_PLANS = {"639", "690", "691", "692", "693", "694", "696", "697", "700"}


def schemas():
    with open(OPENAPI, encoding="utf-8") as f:
        return json.load(f)["components"]["schemas"]


def connect():
    """A connection to DB_PATH with the extension loaded and the schema migrated."""
    conn = extension.connect(EXTENSION, DB_PATH)
    conn.execute("SELECT onboarding_migrate()")
    return conn


def refused(phone):
    """The business step's error for a phone it does not take."""
    return (
        f"onboarding_step: invalid_field: phone '{phone}' is not a valid phone number "
        "(expected E.164 such as '+33612345678' or a French number such as "
        "'06 12 34 56 78')"
    )


def forms(prefix, rest="123456"):
    """Six ways people write the number +33{prefix}{rest}."""
    d1, d23 = prefix[0], prefix[1:]
    pairs = [rest[0:2], rest[2:4], rest[4:6]]
    return [
        f"0{prefix}{rest}",
        f"0{d1} {d23} " + " ".join(pairs),
        f"0{d1}.{d23}." + ".".join(pairs),
        f"0{d1}-{d23}-" + "-".join(pairs),
        f"+33{prefix}{rest}",
        f"+33 {d1} {d23} " + " ".join(pairs),
    ]


class PhonePattern(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pattern = re.compile(schemas()["BusinessPayload"]["properties"]["phone"]["pattern"])
        cls.conn = connect()
        created = json.loads(cls.conn.execute("SELECT onboarding_create(NULL)").fetchone()[0])
        cls.session = created["session_id"]

    def saved(self, phone):
        """The E.164 number the business step saves for `phone`, or its error."""
        body = {"company_name": "Salon", "industry": "Coiffure", "phone": phone, "email": "a@b.fr"}
        try:
            self.conn.execute(
                "SELECT onboarding_step(?, 'business', ?)", (self.session, json.dumps(body))
            )
        except sqlite3.Error as e:
            return str(e)
        get = json.loads(
            self.conn.execute("SELECT onboarding_get(?)", (self.session,)).fetchone()[0]
        )
        return get["steps"]["business"]["phone"]

    def test_every_number_the_pattern_matches_is_taken(self):
        matched = 0
        for p in range(100, 1000):
            prefix = str(p)
            for phone in forms(prefix):
                if self.pattern.match(phone):
                    matched += 1
                    self.assertEqual(self.saved(phone), f"+33{prefix}123456", phone)
                else:
                    self.assertTrue(prefix[0] not in "67" or prefix in OTHER_PLANS, phone)
        # The 200 prefixes of 06 and 07 but the 9 of other plans, in each of
        # the six forms.
        self.assertEqual(matched, (200 - len(OTHER_PLANS)) * 6)

    def test_a_code_reaches_every_number_it_matches_by_sms_and_by_call(self):
        sent = 0
        for p in range(600, 800):
            phone = f"0{p}987654"
            if not self.pattern.match(phone):
                continue
            # One session a channel: a second send within 60 s is refused.
            for payload, channel in [(None, "sms"), ('{"channel":"voice"}', "voice")]:
                session = json.loads(
                    self.conn.execute("SELECT onboarding_create(NULL)").fetchone()[0]
                )["session_id"]
                body = {"company_name": "Salon", "industry": "Coiffure", "phone": phone,
                        "email": f"s{sent}@b.fr"}
                self.conn.execute(
                    "SELECT onboarding_step(?, 'business', ?)", (session, json.dumps(body))
                )
                answer = json.loads(
                    self.conn.execute(
                        "SELECT onboarding_phone_send(?, ?)", (session, payload)
                    ).fetchone()[0]
                )
                self.assertEqual(
                    (answer["phone_number"], answer["channel"]), (f"+33{p}987654", channel)
                )
                sent += 1
        self.assertEqual(sent, (200 - len(OTHER_PLANS)) * 2)

    def test_the_ends_take_what_the_library_trims(self):
        for phone in ["\u200b 06 12 34 56 78\u00a0", "\ufeff+33 6 12 34 56 78\u2029"]:
            self.assertTrue(self.pattern.match(phone), ascii(phone))
            self.assertEqual(self.saved(phone), "+33612345678")
        # French typography's narrow no-break space between the pairs.
        phone = "06\u202f12\u202f34\u202f56\u202f78"
        self.assertTrue(self.pattern.match(phone))
        self.assertEqual(self.saved(phone), "+33612345678")

    def test_what_it_leaves_out(self):
        # Matched by the document's earlier pattern, refused by the server.
        self.assertIsNone(self.pattern.match("07 ."))
        self.assertEqual(self.saved("07 ."), refused("07 ."))
        # Taken by the business step beyond the pattern, as its description
        # says: a fixed line, a special-rate number, another country's, an
        # overseas department's, brackets.
        for phone, e164 in [
            ("01 23 45 67 89", "+33123456789"),
            ("08 99 12 34 56", "+33899123456"),
            ("+32 470 12 34 56", "+32470123456"),
            ("0692 12 34 56", "+262692123456"),
            ("+33 (0)6 12 34 56 78", "+33612345678"),
        ]:
            self.assertIsNone(self.pattern.match(phone), phone)
            self.assertEqual(self.saved(phone), e164)
        # A '+' number with dots and no space is read as an RFC 3966 one,
        # whose country code (336) does not exist.
        self.assertIsNone(self.pattern.match("+336.12.34.56.78"))
        self.assertEqual(self.saved("+336.12.34.56.78"), refused("+336.12.34.56.78"))


class CrawlUrlPattern(unittest.TestCase):
    def test_a_bidirectional_control_inside_is_outside_the_pattern(self):
        kb = schemas()["KbPayload"]["oneOf"][0]["properties"]["crawl_url"]
        pattern = re.compile(kb["pattern"])
        self.assertTrue(pattern.match("https://mon-site.fr/tarifs?page=2"))
        conn = connect()
        session = json.loads(conn.execute("SELECT onboarding_create(NULL)").fetchone()[0])
        for c in ["\u202a", "\u202e", "\u2066", "\u2069"]:
            url = f"https://mon-site.fr/a{c}b"
            self.assertIsNone(pattern.match(url), ascii(c))
            body = json.dumps({"method": "website", "crawl_url": url})
            with self.assertRaises(sqlite3.Error) as refused:
                conn.execute(
                    "SELECT onboarding_step(?, 'kb', ?)", (session["session_id"], body)
                )
            self.assertEqual(
                str(refused.exception),
                f"onboarding_step: invalid_field: crawl_url 'https://mon-site.fr/a\\u{ord(c):04x}b' "
                "contains a bidirectional control character (U+202A to U+202E or U+2066 to "
                "U+2069: they reorder the text after it)",
            )


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0]])
