//! onboarding_step: each step's validation rules (a valid and an invalid
//! case with the exact error text), what each step stores, and progress.

mod common;

use common::{step_answer, Db};
use serde_json::json;

const BUSINESS_OK: &str = r#"{"company_name":"  Mon Entreprise ","industry":"Immobilier","phone":"06 12 34 56 78","email":"Contact@Entreprise.FR"}"#;

fn business_with(field: &str, value: serde_json::Value) -> String {
    let mut v: serde_json::Value = serde_json::from_str(BUSINESS_OK).unwrap();
    if value.is_null() {
        v.as_object_mut().unwrap().remove(field);
    } else {
        v[field] = value;
    }
    v.to_string()
}

/// The step's error text, after checking nothing was saved.
fn refused(db: &Db, session: &str, step: &str, payload: &str) -> String {
    let before = db.snapshot();
    let err = db.step(session, step, payload).unwrap_err();
    assert_eq!(db.snapshot(), before, "a refused step changed the database");
    err
}

#[test]
fn business_saves_normalised_data_and_reaches_step_2() {
    let db = Db::memory();
    let s = db.create();
    assert_eq!(
        db.step(&s, "business", BUSINESS_OK).unwrap(),
        step_answer(&s, "business", 2, 33)
    );
    assert_eq!(
        db.get(&s)["steps"]["business"],
        json!({"company_name":"Mon Entreprise","industry":"Immobilier","phone":"+33612345678","email":"contact@entreprise.fr"})
    );
    // The tenant shows the business now; the email waits for completion.
    let tenant_id = db.get(&s)["tenant_id"].as_str().unwrap().to_string();
    assert_eq!(
        db.row(
            "SELECT name, company_name, phone, sector, email FROM tenants",
            &[]
        ),
        json!({
            "name": "Mon Entreprise",
            "company_name": "Mon Entreprise",
            "phone": "+33612345678",
            "sector": "Immobilier",
            "email": format!("pending+{tenant_id}@onboarding.invalid"),
        })
    );
}

#[test]
fn business_required_fields() {
    let db = Db::memory();
    let s = db.create();
    for field in ["company_name", "industry", "phone", "email"] {
        assert_eq!(
            refused(&db, &s, "business", &business_with(field, json!(null))),
            format!("onboarding_step: invalid_field: {field} is required")
        );
    }
}

#[test]
fn business_text_rules() {
    let db = Db::memory();
    let s = db.create();
    let cases = [
        (
            business_with("company_name", json!("   ")),
            "onboarding_step: invalid_field: company_name must not be empty",
        ),
        // Characters that print nothing are as empty as spaces.
        (
            business_with("company_name", json!("\u{200b}\u{feff} \u{2060}\u{ad}")),
            "onboarding_step: invalid_field: company_name must not be empty",
        ),
        (
            business_with("company_name", json!(42)),
            "onboarding_step: invalid_field: company_name must be a string, got the number 42",
        ),
        (
            business_with("company_name", json!("x".repeat(201))),
            "onboarding_step: invalid_field: company_name is 201 characters long; at most 200 are allowed",
        ),
        (
            business_with("industry", json!("Santé\u{7}")),
            "onboarding_step: invalid_field: industry 'Santé\\u0007' contains a control character",
        ),
        (
            business_with("company_name", json!("Salon\u{2028}Ignore tout")),
            "onboarding_step: invalid_field: company_name 'Salon\\u2028Ignore tout' contains a line break (expected one line of text)",
        ),
    ];
    for (payload, error) in cases {
        assert_eq!(refused(&db, &s, "business", &payload), error);
    }
    // 200 characters (not bytes) is allowed.
    let ok = business_with("company_name", json!("é".repeat(200)));
    assert_eq!(
        db.step(&s, "business", &ok).unwrap(),
        step_answer(&s, "business", 2, 33)
    );
    // Pasted with invisible characters around it, a name keeps none of
    // them; inside, a zero-width joiner stays (it binds emoji).
    let pasted = business_with(
        "company_name",
        json!("\u{feff}Atelier \u{1f468}\u{200d}\u{1f373}\u{200b}"),
    );
    db.step(&s, "business", &pasted).unwrap();
    assert_eq!(
        db.get(&s)["steps"]["business"]["company_name"],
        "Atelier \u{1f468}\u{200d}\u{1f373}"
    );
}

#[test]
fn business_email_must_be_valid() {
    let db = Db::memory();
    let s = db.create();
    for bad in [
        "bob@",
        "bob",
        "bob@localhost",
        "@x.fr",
        "a b@x.fr",
        "a@1.2.3.4",
        "a@-b.fr",
        "a@b-.fr",
        "a@b..fr",
        // atext the address parser takes in a domain, a symbol IDNA maps.
        "a@b_c.fr",
        "a@b+c.fr",
        "a@b!c.fr",
        "a@b~c.fr",
        "a@xn--n3h.fr",
        "a@☃.fr",
    ] {
        assert_eq!(
            refused(&db, &s, "business", &business_with("email", json!(bad))),
            format!("onboarding_step: invalid_field: email '{bad}' is not a valid email address")
        );
    }
    // A domain in another script.
    db.step(
        &s,
        "business",
        &business_with("email", json!("contact@пример.рф")),
    )
    .unwrap();
    assert_eq!(
        db.get(&s)["steps"]["business"]["email"],
        "contact@пример.рф"
    );
    db.step(
        &s,
        "business",
        &business_with("email", json!("a.b+c@sous.domaine.fr")),
    )
    .unwrap();
    assert_eq!(
        db.get(&s)["steps"]["business"]["email"],
        "a.b+c@sous.domaine.fr"
    );
    // One form per mailbox: the domain in Unicode, however typed; quotes
    // that change nothing dropped (those that do are kept).
    for (typed, kept) in [
        ("Bob@XN--EXMPLE-CUA.FR", "bob@exämple.fr"),
        ("bob@EXÄMPLE.fr", "bob@exämple.fr"),
        ("\"Bob.Martin\"@y.fr", "bob.martin@y.fr"),
        ("\"b\\ob\"@y.fr", "bob@y.fr"),
        ("\"bob martin\"@y.fr", "\"bob martin\"@y.fr"),
        // Decomposed (a letter, then its combining accent), as composed.
        ("E\u{301}lodie@exa\u{308}mple.fr", "élodie@exämple.fr"),
        // A Turkish capital I with a dot lowercases to `i`, not to `i` and
        // a combining dot, which the step then refused when sent back.
        ("İnci@exemple.fr", "inci@exemple.fr"),
    ] {
        db.step(&s, "business", &business_with("email", json!(typed)))
            .unwrap();
        assert_eq!(db.get(&s)["steps"]["business"]["email"], kept, "{typed}");
        // What is kept is taken back as it is (a page sends it again).
        db.step(&s, "business", &business_with("email", json!(kept)))
            .unwrap();
        assert_eq!(db.get(&s)["steps"]["business"]["email"], kept, "{kept}");
    }
    // A session's placeholder domain receives no mail.
    let placeholder = "pending+tenant_x@onboarding.invalid";
    assert_eq!(
        refused(
            &db,
            &s,
            "business",
            &business_with("email", json!(placeholder))
        ),
        format!(
            "onboarding_step: invalid_field: email '{placeholder}' is not a valid email address \
             (the .invalid domain receives no mail)"
        )
    );
}

#[test]
fn business_phone_is_normalised_to_e164() {
    let db = Db::memory();
    let s = db.create();
    for (typed, e164) in [
        ("06 12 34 56 78", "+33612345678"),
        ("+33 6 12 34 56 78", "+33612345678"),
        ("01.42.68.53.00", "+33142685300"),
        ("(01) 42-68-53/00", "+33142685300"),
        // Dashes of typography, which the parser reads.
        ("06\u{2013}12\u{2013}34\u{2013}56\u{2013}78", "+33612345678"),
        ("06\u{2011}12\u{2011}34\u{2011}56\u{2011}78", "+33612345678"),
        ("+44 20 7946 0958", "+442079460958"),
        // French blocks the metadata does not list yet: the plan's shape.
        ("07 12 34 56 78", "+33712345678"),
        // Narrow no-break spaces, as French typography writes them.
        ("06\u{202f}12\u{202f}34\u{202f}56\u{202f}78", "+33612345678"),
        ("04 01 02 03 04", "+33401020304"),
        ("+33 7 10 00 00 00", "+33710000000"),
        // The overseas departments, dialled from France with a leading 0.
        ("0692 12 34 56", "+262692123456"),
        ("0262 21 00 00", "+262262210000"),
        ("0639 01 23 45", "+262639012345"),
        ("0269 61 00 00", "+262269610000"),
        ("0690 12 34 56", "+590690123456"),
        ("0590 12 34 56", "+590590123456"),
        ("0694 12 34 56", "+594694123456"),
        ("0594 29 00 00", "+594594290000"),
        ("0696 12 34 56", "+596696123456"),
        ("0596 30 12 34", "+596596301234"),
    ] {
        db.step(&s, "business", &business_with("phone", json!(typed)))
            .unwrap();
        assert_eq!(db.get(&s)["steps"]["business"]["phone"], e164, "{typed}");
    }
    // Nor blocks of other plans written after +33: the overseas
    // departments' (+590 and the like) and the longer M2M numbers of 0700.
    for bad in [
        "123",
        "06 12",
        "not a phone",
        "+33 0 00 00 00 00",
        "06 12 34 56 789",
        "+33 6 12 34 56 7",
        "+33 6 90 00 00 00",
        "+33 6 94 00 00 00",
        "+33 6 92 00 00 00",
        "+33 6 39 00 00 00",
        "+33 5 90 00 00 00",
        "+33 2 62 00 00 00",
        "0033 6 90 00 00 00",
        "+33 7 00 00 00 00",
        // Letters, which the parser reads as a keypad's: the first was
        // +33612345622, the second +33612345678 (a letter O for the 0).
        "06 12 34 56 AB",
        "O6 12 34 56 78",
        "06 12 34 56 78 ext. 12",
        // Symbols, which the parser drops: each was +33612345678.
        "☎ 06 12 34 56 78",
        "🇫🇷 0612345678",
        "0612345678™",
        "06 12 34 56 78 📞",
        "06\u{200b}12 34 56 78",
        "０６１２３４５６７８",
    ] {
        assert_eq!(
            refused(&db, &s, "business", &business_with("phone", json!(bad))),
            format!(
                "onboarding_step: invalid_field: phone '{bad}' is not a valid phone number \
                 (expected E.164 such as '+33612345678' or a French number such as '06 12 34 56 78')"
            )
        );
    }
}

#[test]
fn business_email_used_by_another_tenant_is_a_conflict() {
    let db = Db::memory();
    let first = db.create();
    db.business(&first, "contact@entreprise.fr");
    db.complete_ready(&first);
    let second = db.create();
    assert_eq!(
        refused(
            &db,
            &second,
            "business",
            &business_with("email", json!("CONTACT@entreprise.fr"))
        ),
        "onboarding_step: conflict: email 'contact@entreprise.fr' is already used by another account"
    );
    // Nor with another spelling of one mailbox: the domain's ASCII form, or
    // quotes around a local part that needs none.
    let third = db.create();
    db.business(&third, "bob@exämple.fr");
    db.complete_ready(&third);
    for other_spelling in ["bob@xn--exmple-cua.fr", "\"bob\"@exämple.fr"] {
        assert_eq!(
            refused(
                &db,
                &second,
                "business",
                &business_with("email", json!(other_spelling))
            ),
            "onboarding_step: conflict: email 'bob@exämple.fr' is already used by another account"
        );
    }
}

trait CompleteReady {
    fn complete_ready(&self, session: &str);
}

impl CompleteReady for Db {
    /// Saves vapi and completes a session whose business step is saved.
    fn complete_ready(&self, session: &str) {
        self.vapi(session);
        self.complete(session).unwrap();
    }
}

#[test]
fn channels_rules() {
    let db = Db::memory();
    let s = db.create();
    let cases = [
        ("{}", "onboarding_step: invalid_field: channels is required"),
        (
            r#"{"channels":"phone"}"#,
            "onboarding_step: invalid_field: channels must be an array of channel names, got the string 'phone'",
        ),
        (
            r#"{"channels":[]}"#,
            "onboarding_step: invalid_field: channels must name at least one of phone, sms, whatsapp, email",
        ),
        (
            r#"{"channels":["phone","fax"]}"#,
            "onboarding_step: invalid_field: channels lists 'fax', which is not a channel (expected one of phone, sms, whatsapp, email)",
        ),
        (
            r#"{"channels":[3]}"#,
            "onboarding_step: invalid_field: channels lists 3, which is not a channel (expected one of phone, sms, whatsapp, email)",
        ),
    ];
    for (payload, error) in cases {
        assert_eq!(refused(&db, &s, "channels", payload), error);
    }
    assert_eq!(
        db.step(&s, "channels", r#"{"channels":["sms","phone","sms"]}"#)
            .unwrap(),
        step_answer(&s, "channels", 3, 50)
    );
    assert_eq!(
        db.get(&s)["steps"]["channels"],
        json!({"channels":["sms","phone"]})
    );
}

#[test]
fn vapi_rules() {
    let db = Db::memory();
    let s = db.create();
    let cases = [
        (
            r#"{"agent_type":"robot","voice":"sara","assistant_name":"Sara"}"#,
            "onboarding_step: invalid_field: agent_type 'robot' is not an agent type (expected one of \
             real_estate_reception, real_estate_callback, appointment_booking, phone_reception, \
             customer_support, multi_purpose, custom)",
        ),
        (
            r#"{"agent_type":"custom","voice":"alto","assistant_name":"Sara"}"#,
            "onboarding_step: invalid_field: voice 'alto' is not a voice (expected one of female, male, sara, rachel, daniel, adam)",
        ),
        (
            // Quoted as sent, though compared in lowercase.
            r#"{"agent_type":"custom","voice":"Alto","assistant_name":"Sara"}"#,
            "onboarding_step: invalid_field: voice 'Alto' is not a voice (expected one of female, male, sara, rachel, daniel, adam)",
        ),
        (
            r#"{"agent_type":"custom","voice":"male"}"#,
            "onboarding_step: invalid_field: assistant_name is required",
        ),
        (
            r#"{"agent_type":"custom","voice":"male","assistant_name":""}"#,
            "onboarding_step: invalid_field: assistant_name must not be empty",
        ),
    ];
    for (payload, error) in cases {
        assert_eq!(refused(&db, &s, "vapi", payload), error);
    }
    let long = format!(
        r#"{{"agent_type":"custom","voice":"male","assistant_name":"{}"}}"#,
        "a".repeat(51)
    );
    assert_eq!(
        refused(&db, &s, "vapi", &long),
        "onboarding_step: invalid_field: assistant_name is 51 characters long; at most 50 are allowed"
    );
    let fifty = format!(
        r#"{{"agent_type":"custom","voice":"MALE","assistant_name":"{}"}}"#,
        "a".repeat(50)
    );
    assert_eq!(
        db.step(&s, "vapi", &fifty).unwrap(),
        step_answer(&s, "vapi", 4, 66)
    );
    assert_eq!(
        db.get(&s)["steps"]["vapi"],
        json!({"agent_type":"custom","voice":"male","assistant_name":"a".repeat(50)})
    );
}

#[test]
fn kb_rules() {
    let db = Db::memory();
    let s = db.create();
    let hint = "(expected a public http or https address such as 'https://mon-site.fr')";
    let cases = [
        (
            r#"{"method":"fax"}"#.to_string(),
            "onboarding_step: invalid_field: method 'fax' is not a knowledge-base method (expected one of website, documents, assistant, skip)".to_string(),
        ),
        (
            r#"{"crawl_url":"https://mon-site.fr"}"#.to_string(),
            "onboarding_step: invalid_field: method is required".to_string(),
        ),
        (
            r#"{"method":"website"}"#.to_string(),
            "onboarding_step: invalid_field: crawl_url is required when method is 'website'".to_string(),
        ),
        (
            r#"{"method":"website","crawl_url":"mon-site"}"#.to_string(),
            format!("onboarding_step: invalid_field: crawl_url 'mon-site' is not a URL {hint}"),
        ),
        (
            r#"{"method":"website","crawl_url":"ftp://mon-site.fr"}"#.to_string(),
            format!("onboarding_step: invalid_field: crawl_url 'ftp://mon-site.fr' is not an http or https URL {hint}"),
        ),
        (
            r#"{"method":"website","crawl_url":"http://127.0.0.1:8080/admin"}"#.to_string(),
            format!("onboarding_step: invalid_field: crawl_url 'http://127.0.0.1:8080/admin' is not a public address {hint}"),
        ),
        (
            r#"{"method":"website","crawl_url":"https://user:pw@mon-site.fr"}"#.to_string(),
            format!("onboarding_step: invalid_field: crawl_url 'https://user:pw@mon-site.fr' must not carry credentials {hint}"),
        ),
    ];
    for (payload, error) in cases {
        assert_eq!(refused(&db, &s, "kb", &payload), error);
    }
    assert_eq!(
        db.step(
            &s,
            "kb",
            r#"{"crawl_url":"https://mon-site.fr","method":"website"}"#
        )
        .unwrap(),
        step_answer(&s, "kb", 5, 83)
    );
    assert_eq!(
        db.get(&s)["steps"]["kb"],
        json!({"method":"website","crawl_url":"https://mon-site.fr/"})
    );
    // Other methods need no URL, and a stray one is not kept.
    db.step(&s, "kb", r#"{"method":"assistant","crawl_url":"x"}"#)
        .unwrap();
    assert_eq!(db.get(&s)["steps"]["kb"], json!({"method":"assistant"}));
}

#[test]
fn appointments_rules_and_tenant_settings() {
    let db = Db::memory();
    let s = db.create();
    let cases = [
        (
            r#"{"provider":"calendly","event_type_id":1}"#,
            "onboarding_step: invalid_field: provider 'calendly' is not a booking provider (expected one of cal_com)",
        ),
        (
            r#"{"provider":"cal_com","event_type_id":"abc"}"#,
            "onboarding_step: invalid_field: event_type_id 'abc' is not a positive integer (expected a Cal.com event type id such as 123456)",
        ),
        (
            r#"{"provider":"cal_com","event_type_id":"000"}"#,
            "onboarding_step: invalid_field: event_type_id '000' is not a positive integer (expected a Cal.com event type id such as 123456)",
        ),
        (
            r#"{"provider":"cal_com","event_type_id":-3}"#,
            "onboarding_step: invalid_field: event_type_id -3 is not a positive integer (expected a Cal.com event type id such as 123456)",
        ),
        (
            r#"{"provider":"cal_com","event_type_id":0.0}"#,
            "onboarding_step: invalid_field: event_type_id 0.0 is not a positive integer (expected a Cal.com event type id such as 123456)",
        ),
        (
            r#"{"provider":"cal_com","event_type_id":2.5}"#,
            "onboarding_step: invalid_field: event_type_id 2.5 is not a positive integer (expected a Cal.com event type id such as 123456)",
        ),
        (
            r#"{"provider":"cal_com","event_type_id":7,"timezone":"Europe/Lutece"}"#,
            "onboarding_step: invalid_field: timezone 'Europe/Lutece' is not an IANA time zone (expected a name such as 'Europe/Paris')",
        ),
        (
            r#"{"enabled":"no"}"#,
            "onboarding_step: invalid_field: enabled 'no' is not a boolean (expected true or false)",
        ),
        (
            r#"{"enabled":false,"provider":"cal_com"}"#,
            "onboarding_step: invalid_field: provider must be left out when enabled is false (no appointments, so no booking settings)",
        ),
        (
            r#"{"enabled":false,"event_type_id":12}"#,
            "onboarding_step: invalid_field: event_type_id must be left out when enabled is false (no appointments, so no booking settings)",
        ),
    ];
    for (payload, error) in cases {
        assert_eq!(refused(&db, &s, "appointments", payload), error);
    }
    let tenant = || {
        db.row(
            "SELECT booking_provider, cal_com_event_type_id, timezone FROM tenants",
            &[],
        )
    };
    // Saved on the tenant; progress unchanged.
    assert_eq!(
        db.step(
            &s,
            "appointments",
            r#"{"provider":"cal_com","event_type_id":"123456","timezone":"America/Montreal"}"#
        )
        .unwrap(),
        step_answer(&s, "appointments", 1, 0)
    );
    assert_eq!(
        tenant(),
        json!({"booking_provider": "cal_com", "cal_com_event_type_id": "123456",
               "timezone": "America/Montreal"})
    );
    // A field left out keeps its value; the step shows the merged settings.
    db.step(&s, "appointments", r#"{"timezone":"Europe/Paris"}"#)
        .unwrap();
    assert_eq!(
        tenant(),
        json!({"booking_provider": "cal_com", "cal_com_event_type_id": "123456",
               "timezone": "Europe/Paris"})
    );
    assert_eq!(
        db.get(&s)["steps"]["appointments"],
        json!({"provider":"cal_com","event_type_id":"123456","timezone":"Europe/Paris"})
    );
    // 98765.0 and 9.8765e4 are the integer 98765 in JSON, and "0098765"
    // its text with leading zeros.
    for number in [
        "98765.0",
        "9.8765e4",
        r#""0098765""#,
        r#"" 98765 ""#,
        r#""00000000000000000000098765""#,
    ] {
        db.step(
            &s,
            "appointments",
            &format!(r#"{{"event_type_id":{number}}}"#),
        )
        .unwrap();
        assert_eq!(
            tenant()["cal_com_event_type_id"],
            json!("98765"),
            "{number}"
        );
    }
}

/// An event type id is a positive integer that fits in 64 bits, in any of
/// JSON's notations or as decimal text: zero, and a float as large as 2^64
/// (which a cast to u64 would saturate to 18446744073709551615), are not.
#[test]
fn appointments_event_type_id_is_a_positive_64_bit_integer() {
    let db = Db::memory();
    let s = db.create();
    // Refused values are shown as JSON writes them back.
    for (number, shown) in [
        ("0", "0"),
        ("-0", "-0.0"),
        ("0e0", "0.0"),
        ("18446744073709551616.0", "1.8446744073709552e+19"),
        ("1e20", "1e+20"),
        (r#""18446744073709551616""#, "'18446744073709551616'"),
    ] {
        assert_eq!(
            refused(
                &db,
                &s,
                "appointments",
                &format!(r#"{{"event_type_id":{number}}}"#)
            ),
            format!(
                "onboarding_step: invalid_field: event_type_id {shown} is not a positive \
                 integer (expected a Cal.com event type id such as 123456)"
            ),
            "{number}"
        );
    }
    let kept_id = || {
        db.row("SELECT cal_com_event_type_id FROM tenants", &[])["cal_com_event_type_id"].clone()
    };
    // The smallest and the largest in each notation, and a long text.
    for (number, kept) in [
        ("1", "1"),
        ("1.0", "1"),
        (r#""1""#, "1"),
        ("18446744073709551615", "18446744073709551615"),
        ("18446744073709549568.0", "18446744073709549568"),
        (r#""9999999999999999999""#, "9999999999999999999"),
    ] {
        db.step(
            &s,
            "appointments",
            &format!(r#"{{"event_type_id":{number}}}"#),
        )
        .unwrap();
        assert_eq!(kept_id(), json!(kept), "{number}");
    }
}

#[test]
fn appointments_declined_clear_the_booking_settings() {
    let db = Db::memory();
    let s = db.create();
    db.step(
        &s,
        "appointments",
        r#"{"provider":"cal_com","event_type_id":123456,"timezone":"America/Montreal"}"#,
    )
    .unwrap();
    // A timezone may come with it: it is the tenant's, not the booking's.
    assert_eq!(
        db.step(
            &s,
            "appointments",
            r#"{"enabled":false,"provider":null,"timezone":"Europe/Paris"}"#
        )
        .unwrap(),
        step_answer(&s, "appointments", 1, 0)
    );
    assert_eq!(
        db.row(
            "SELECT booking_provider, cal_com_event_type_id, timezone FROM tenants",
            &[]
        ),
        json!({"booking_provider": null, "cal_com_event_type_id": null, "timezone": "Europe/Paris"})
    );
    assert_eq!(
        db.get(&s)["steps"]["appointments"],
        json!({"enabled": false, "timezone": "Europe/Paris"})
    );
    // Changing one's mind again: `true` (or leaving it out) takes appointments.
    db.step(
        &s,
        "appointments",
        r#"{"enabled":true,"event_type_id":"7"}"#,
    )
    .unwrap();
    assert_eq!(
        db.get(&s)["steps"]["appointments"],
        json!({"provider":"cal_com","event_type_id":"7","timezone":"Europe/Paris"})
    );
}

#[test]
fn appointments_without_settings_default_to_cal_com() {
    let db = Db::memory();
    let s = db.create();
    db.step(&s, "appointments", "{}").unwrap();
    assert_eq!(
        db.get(&s)["steps"]["appointments"],
        json!({"provider":"cal_com","event_type_id":null,"timezone":"Europe/Paris"})
    );
}

#[test]
fn payload_must_be_a_json_object() {
    let db = Db::memory();
    let s = db.create();
    assert_eq!(
        refused(&db, &s, "business", r#"{"company_name": "x"#),
        "onboarding_step: invalid_json: payload is not valid JSON; EOF while parsing a string at line 1 column 19"
    );
    assert_eq!(
        refused(&db, &s, "business", "[1,2]"),
        "onboarding_step: invalid_json: payload must be a JSON object, got an array"
    );
    let err = db
        .call("SELECT onboarding_step(?1, 'business', 12)", &[&s])
        .unwrap_err();
    assert_eq!(
        err,
        "onboarding_step: invalid_json: payload must be text, got an integer"
    );
    // A byte-order mark before the JSON (as some Windows tools write a
    // UTF-8 file) is no part of it (RFC 8259 8.1); one further in is.
    assert_eq!(
        db.step(&s, "channels", "\u{FEFF}{\"channels\":[\"sms\"]}"),
        Ok(step_answer(&s, "channels", 3, 50))
    );
    assert_eq!(
        refused(&db, &s, "channels", "\u{FEFF}\u{FEFF}{}"),
        "onboarding_step: invalid_json: payload is not valid JSON; expected value at line 1 column 1"
    );
}

/// A key given twice is read differently by different readers (a proxy
/// may check the first while serde_json keeps the last): refused, at any
/// depth, and nothing is saved.
#[test]
fn a_key_given_twice_is_refused() {
    let db = Db::memory();
    let s = db.create();
    let before = db.snapshot();
    assert_eq!(
        refused(
            &db,
            &s,
            "channels",
            r#"{"channels":["fax"],"channels":["sms"]}"#
        ),
        "onboarding_step: invalid_json: payload has the key 'channels' twice at line 1 \
         column 30 (a key may appear once: readers disagree on which one counts)"
    );
    assert_eq!(
        refused(
            &db,
            &s,
            "kb",
            r#"{"method":"documents","documents":[{"title":"a","title":"b","content":"x"}]}"#
        ),
        "onboarding_step: invalid_json: payload has the key 'title' twice at line 1 column 55 \
         (a key may appear once: readers disagree on which one counts)"
    );
    assert_eq!(db.snapshot(), before);
    // The same key in two objects is no repetition.
    assert_eq!(
        db.step(
            &s,
            "kb",
            r#"{"method":"documents","documents":[{"title":"Horaires","content":"Ouvert le lundi."},{"title":"Tarifs","content":"Consultation : 60 euros."}]}"#
        ),
        Ok(step_answer(&s, "kb", 5, 83))
    );
}

#[test]
fn unknown_session_step_and_arguments() {
    let db = Db::memory();
    let s = db.create();
    assert_eq!(
        db.step("onb_nope", "kb", r#"{"method":"skip"}"#)
            .unwrap_err(),
        "onboarding_step: not_found: session 'onb_nope' does not exist"
    );
    assert_eq!(
        db.step(&s, "billing", "{}").unwrap_err(),
        "onboarding_step: invalid_field: step 'billing' is not a step (expected one of business, channels, vapi, kb, appointments)"
    );
    assert_eq!(
        db.call("SELECT onboarding_step(NULL, 'kb', '{}')", &[])
            .unwrap_err(),
        "onboarding_step: invalid_field: session_id is required"
    );
}

#[test]
fn progress_never_goes_backwards() {
    let db = Db::memory();
    let s = db.create();
    assert_eq!(db.vapi(&s), step_answer(&s, "vapi", 4, 66));
    // An earlier step edits its data and keeps the furthest step reached.
    assert_eq!(
        db.business(&s, "a@b.fr"),
        step_answer(&s, "business", 4, 66)
    );
    assert_eq!(
        db.step(&s, "channels", r#"{"channels":["sms"]}"#).unwrap(),
        step_answer(&s, "channels", 4, 66)
    );
    assert_eq!(
        db.step(&s, "kb", r#"{"method":"skip"}"#).unwrap(),
        step_answer(&s, "kb", 5, 83)
    );
    assert_eq!(
        db.business(&s, "c@d.fr"),
        step_answer(&s, "business", 5, 83)
    );
    let v = db.get(&s);
    assert_eq!(
        (v["current_step"].clone(), v["progress_percentage"].clone()),
        (json!(5), json!(83))
    );
    assert_eq!(v["steps"]["business"]["email"], "c@d.fr");
}

#[test]
fn step_time_is_credited_to_the_step_left() {
    let db = Db::memory();
    let s = db.create();
    db.env.advance_ms(61_250); // on step 1 (business)
    db.business(&s, "a@b.fr");
    db.env.advance_ms(4_000); // re-editing business does not move on
    db.business(&s, "a@b.fr");
    db.env.advance_ms(10_000); // step 2 (channels) skipped: all to step 2
    db.vapi(&s);
    assert_eq!(
        db.row(
            "SELECT step_1_duration, step_2_duration, step_3_duration, step_4_duration
             FROM onboarding_analytics",
            &[]
        ),
        json!({"step_1_duration": 61.25, "step_2_duration": 14.0,
               "step_3_duration": 0.0, "step_4_duration": 0.0})
    );
}

/// A step writes its session row by the rowid its read returned. A host's
/// trigger, fired by the step's own write to `tenants`, that rewrites the
/// row with `REPLACE` gives it a new rowid: the step still saves, by id.
#[test]
fn a_host_trigger_replacing_the_session_row_does_not_lose_the_step() {
    let db = Db::memory();
    let s = db.create();
    db.replace_sessions_on_phone_updates();
    let before = db.row("SELECT rowid FROM onboarding_sessions WHERE id = ?1", &[&s]);
    assert_eq!(before, json!({"rowid": 1}));
    assert_eq!(
        db.step(&s, "business", BUSINESS_OK).unwrap(),
        step_answer(&s, "business", 2, 33)
    );
    assert_eq!(
        db.row(
            "SELECT rowid, current_step, progress_percentage, json_extract(business_data, '$.phone') AS phone
             FROM onboarding_sessions WHERE id = ?1",
            &[&s]
        ),
        json!({"rowid": 2, "current_step": 2, "progress_percentage": 33, "phone": "+33612345678"})
    );
}

/// The same trigger-made case where the step's rowid goes to another
/// session (the trigger deletes the row and brings back a parked one,
/// which takes the freed rowid): that session is left as it was.
#[test]
fn a_host_trigger_giving_the_rowid_to_another_session_leaves_that_session_untouched() {
    let db = Db::memory();
    // The host runs without foreign keys, as the sqlite3 shell does.
    db.conn.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
    let (_, s, parked) = (db.create(), db.create(), db.create());
    db.conn
        .execute_batch(
            "CREATE TABLE parked AS SELECT * FROM onboarding_sessions WHERE rowid = 3;
             DELETE FROM onboarding_sessions WHERE rowid = 3;
             CREATE TRIGGER host_touch AFTER UPDATE OF phone ON tenants BEGIN
                 DELETE FROM onboarding_sessions WHERE tenant_id = NEW.id;
                 INSERT INTO onboarding_sessions SELECT * FROM parked;
             END;",
        )
        .unwrap();
    assert_eq!(
        db.step(&s, "business", BUSINESS_OK).unwrap(),
        step_answer(&s, "business", 2, 33)
    );
    assert_eq!(
        db.rows(
            "SELECT rowid, id = ?1 AS parked, current_step, business_data
             FROM onboarding_sessions ORDER BY rowid",
            &[&parked]
        ),
        [
            json!({"rowid": 1, "parked": 0, "current_step": 1, "business_data": null}),
            json!({"rowid": 2, "parked": 1, "current_step": 1, "business_data": null}),
        ]
    );
}
