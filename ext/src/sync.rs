//! The sync at completion: what `onboarding_complete` writes into the
//! omnichannel tables, one function per part, in the spec's order.
//!
//! [`sync`] reads like that list: the required steps, then the tenant, the
//! agent config, the phone mapping, the campaign, the knowledge base, the
//! completion time and the session. Each part writes its rows and answers its
//! piece of the `"synced"` object. The caller runs all of it in one
//! savepoint, so a part that fails undoes the parts before it.

use std::borrow::Cow;

use rusqlite::{Connection, OptionalExtension};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use crate::analytics::{self, OnStep};
use crate::catalog;
use crate::env::{iso8601, parse_iso8601, Env};
use crate::error::{quote, Error, ErrorKind, Result};
use crate::json;
use crate::kb::store;
use crate::session::{row_update, Progress, RowUpdate, Session, Step};
use crate::sql;
use crate::validate::{email_taken, CHANNELS};
use crate::verification;

pub const SUCCESS_MESSAGE: &str = "Onboarding terminé avec succès ! 🎉";

/// The agent used when no voice agent was configured (a session whose
/// channels leave out `phone`): the front end's defaults.
const DEFAULT_AGENT_TYPE: &str = "multi_purpose";
const DEFAULT_ASSISTANT_NAME: &str = "Sara";
const DEFAULT_VOICE: &str = "female";

/// Syncs a session that is still in progress and answers
/// `onboarding_complete`'s body as JSON text: the text the session keeps
/// for retries, serialised once for both.
pub fn sync(conn: &Connection, env: &dyn Env, session: &Session) -> Result<String> {
    let (channels, company, vapi) = ready(session)?;
    let now_ms = env.now_ms();
    let now = iso8601(now_ms);
    let part = Part {
        conn,
        session,
        channels: &channels,
        now: &now,
    };
    let booking = part.tenant(&company)?;
    let agent_config = part.agent_config(vapi.as_ref(), &company.name)?;
    let phone_mapping = part.phone_mapping(&company.phone)?;
    let campaign = part.campaign(booking, &company.name)?;
    let kb = stored::<StoredKb>(session.data(Step::Kb))?;
    let knowledge_base = part.knowledge_base(kb.as_ref())?;
    let duration_seconds = part.completion_time(now_ms)?;
    let result = Completed {
        success: true,
        message: SUCCESS_MESSAGE,
        session_id: session.id,
        tenant_id: &session.tenant_id,
        duration_seconds,
        // Rounded to the nearest minute, as the original answered (342 s -> 6).
        duration_minutes: (duration_seconds + 30) / 60,
        sync_status: "synced",
        already_completed: false,
        synced: Synced {
            agent_config,
            phone_mapping,
            campaign,
            knowledge_base,
        },
    };
    let result = result.to_json();
    part.session_done(&result)?;
    Ok(result)
}

/// A document `onboarding_kb_prepare` stored: the kb step's item, its row
/// and its chunks.
pub struct Prepared {
    pub item: usize,
    pub document_id: i64,
    pub chunks: usize,
}

/// The completion's heaviest work, ahead of it and one document at a time:
/// the first of the kb step's documents (method `documents`) that the
/// tenant's knowledge lacks, stored and indexed as the completion would
/// store it; `None` when none is left (or the step lists none, or the
/// session lacks a step its completion needs). The
/// completion then finds the document stored and counts it
/// ([`Part::documents`]).
///
/// Why: a host whose database runs each call on one thread that must also
/// keep a cluster alive (dqlite's leader, which sends Raft heartbeats
/// between calls) cannot spend seconds in one call. The contract's largest
/// knowledge base (20 documents of 200,000 characters) keeps a dqlite
/// leader 0.92-0.94 s in one completion, past its election timeout; one
/// document a call, 138-160 ms at the longest.
pub fn prepare(conn: &Connection, env: &dyn Env, session: &Session) -> Result<Option<Prepared>> {
    let Some(kb) = stored::<StoredKb>(session.data(Step::Kb))? else {
        return Ok(None);
    };
    if kb.method != "documents" {
        return Ok(None);
    }
    // A session its completion would refuse for missing steps gets nothing
    // stored ahead: indexing 4 MB to have it all undone, on every attempt.
    if let Err(e) = ready(session) {
        return if e.kind == ErrorKind::Incomplete {
            Ok(None)
        } else {
            Err(e)
        };
    }
    let now = iso8601(env.now_ms());
    for (item, doc) in kb.documents.iter().enumerate() {
        let new = pasted_item(&session.tenant_id, item, doc, &now);
        let identity = new.source.identity(&doc.content);
        if let store::Stored::New { id, chunks } = store_item(conn, &new, &identity)? {
            return Ok(Some(Prepared {
                item,
                document_id: id,
                chunks,
            }));
        }
    }
    Ok(None)
}

/// Item `item` of the kb step's documents, as the tenant's document.
fn pasted_item<'a>(
    tenant_id: &'a str,
    item: usize,
    doc: &'a StoredDocument<'_>,
    now: &'a str,
) -> store::NewDocument<'a> {
    store::NewDocument {
        tenant_id,
        job_id: None,
        source: store::Source::Documents { item },
        url: None,
        title: &doc.title,
        markdown: &doc.content,
        depth: None,
        now,
    }
}

/// Stores a pasted item unless the tenant has it already, title and text
/// exactly. Its identity (its place and its words) says whether a document
/// was stored for it; one stored under another title or with other blank
/// space (the kb step saved again after `onboarding_kb_prepare`) goes and
/// the item is stored anew.
fn store_item(
    conn: &Connection,
    new: &store::NewDocument<'_>,
    identity: &str,
) -> Result<store::Stored> {
    let stored = store::store_as(conn, new, identity)?;
    let store::Stored::Duplicate { id } = stored else {
        return Ok(stored);
    };
    let same: bool = sql::query_row(
        conn,
        "SELECT title = ?2 AND markdown = ?3 FROM main.kb_documents WHERE id = ?1",
        (id, new.title, new.markdown),
        |r| r.get(0),
    )?;
    if same {
        return Ok(stored);
    }
    store::delete(conn, id)?;
    store::store_as(conn, new, identity)
}

/// `onboarding_complete`'s answer, in the order its keys are written.
#[derive(Serialize)]
struct Completed<'a> {
    success: bool,
    message: &'static str,
    session_id: &'a str,
    tenant_id: &'a str,
    duration_seconds: i64,
    duration_minutes: i64,
    sync_status: &'static str,
    already_completed: bool,
    synced: Synced<'a>,
}

impl Completed<'_> {
    /// The answer's JSON text, as its `Serialize` impl writes it (a test
    /// holds the two equal), written out: every flow ends with it.
    fn to_json(&self) -> String {
        let mut w = json::Writer::with_capacity(1024);
        w.raw(r#"{"success":"#)
            .bool(self.success)
            .raw(r#","message":"#)
            .string(self.message)
            .raw(r#","session_id":"#)
            .string(self.session_id)
            .raw(r#","tenant_id":"#)
            .string(self.tenant_id)
            .raw(r#","duration_seconds":"#)
            .int(self.duration_seconds)
            .raw(r#","duration_minutes":"#)
            .int(self.duration_minutes)
            .raw(r#","sync_status":"#)
            .string(self.sync_status)
            .raw(r#","already_completed":"#)
            .bool(self.already_completed);
        let Synced {
            agent_config: a,
            phone_mapping: p,
            campaign,
            knowledge_base,
        } = &self.synced;
        w.raw(r#","synced":{"agent_config":{"agent_type":"#)
            .string(a.agent_type)
            .raw(r#","agent_name":"#)
            .string(a.agent_name)
            .raw(r#","voice_provider":"#)
            .string(a.voice_provider)
            .raw(r#","voice_id":"#)
            .string(a.voice_id)
            .raw(r#","voice_language":"#)
            .string(a.voice_language)
            .raw(r#","channels":"#)
            .strings(a.channels);
        w.raw(r#"},"phone_mapping":{"phone_number":"#)
            .string(p.phone_number)
            .raw(r#","status":"#)
            .string(p.status)
            .raw(r#","is_active":"#)
            .bool(p.is_active);
        if let Some(reason) = &p.reason {
            w.raw(r#","reason":"#).string(reason);
        }
        w.raw(r#"},"campaign":"#);
        match campaign {
            None => w.raw("null"),
            Some(c) => w
                .raw(r#"{"name":"#)
                .string(&c.name)
                .raw(r#","campaign_type":"#)
                .string(c.campaign_type)
                .raw(r#","status":"#)
                .string(c.status)
                .raw(r#","channels":"#)
                .strings(c.channels)
                .raw(r#","settings":{"provider":"#)
                .string(&c.settings.provider)
                .raw(r#","event_type_id":"#)
                .opt_string(c.settings.event_type_id.as_deref())
                .raw(r#","timezone":"#)
                .string(&c.settings.timezone)
                .raw("}}"),
        };
        w.raw(r#","knowledge_base":"#);
        match knowledge_base {
            None => w.raw("null"),
            Some(kb) => {
                w.raw(r#"{"method":"#)
                    .string(kb.method)
                    .raw(r#","crawl_job":"#);
                match &kb.crawl_job {
                    None => w.raw("null"),
                    Some(job) => w
                        .raw(r#"{"url":"#)
                        .string(job.url)
                        .raw(r#","status":"#)
                        .string(job.status)
                        .raw("}"),
                };
                w.raw(r#","documents":"#);
                match &kb.documents {
                    None => w.raw("null"),
                    Some(d) => w
                        .raw(r#"{"documents_stored":"#)
                        .int(d.documents_stored as i64)
                        .raw(r#","chunks":"#)
                        .int(d.chunks as i64)
                        .raw("}"),
                };
                w.raw("}")
            }
        };
        w.raw("}}");
        w.finish()
    }
}

/// What each part wrote; `null` for a part that had nothing to write.
#[derive(Serialize)]
struct Synced<'a> {
    agent_config: AgentConfig<'a>,
    phone_mapping: PhoneMapping<'a>,
    campaign: Option<Campaign<'a>>,
    knowledge_base: Option<KnowledgeBase<'a>>,
}

#[derive(Serialize)]
struct AgentConfig<'a> {
    agent_type: &'static str,
    agent_name: &'a str,
    voice_provider: &'static str,
    voice_id: &'static str,
    voice_language: &'static str,
    channels: &'a [String],
}

#[derive(Serialize)]
struct PhoneMapping<'a> {
    phone_number: &'a str,
    status: &'static str,
    is_active: bool,
    /// Why a verified number stays inactive (another tenant routes it), as
    /// `onboarding_phone_verify` says it; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

#[derive(Serialize)]
struct Campaign<'a> {
    name: String,
    campaign_type: &'static str,
    status: &'static str,
    channels: &'a [String],
    settings: CampaignSettings,
}

/// Stored as the campaign's `settings` and answered as is.
#[derive(Serialize)]
struct CampaignSettings {
    provider: String,
    event_type_id: Option<String>,
    timezone: String,
}

#[derive(Serialize)]
struct KnowledgeBase<'a> {
    method: &'a str,
    crawl_job: Option<CrawlJob<'a>>,
    documents: Option<DocumentsStored>,
}

#[derive(Serialize)]
struct CrawlJob<'a> {
    url: &'a str,
    status: &'static str,
}

#[derive(Serialize)]
struct DocumentsStored {
    documents_stored: usize,
    chunks: usize,
}

/// Every channel the platform has, enabled or not, in [`CHANNELS`]'
/// order: `{"phone":{"enabled":true},"sms":{"enabled":false},…}`.
struct ChannelsConfig<'a>(&'a [String]);

#[derive(Serialize)]
struct Enabled {
    enabled: bool,
}

impl Serialize for ChannelsConfig<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(CHANNELS.len()))?;
        for channel in CHANNELS {
            let enabled = self.0.iter().any(|chosen| chosen == channel);
            map.serialize_entry(channel, &Enabled { enabled })?;
        }
        map.end()
    }
}

/// A step's data as the session keeps it (validated when saved), read
/// into the fields completion uses; `None` when the step was not saved.
fn stored<'t, T: Deserialize<'t>>(text: Option<&'t str>) -> Result<Option<T>> {
    Ok(text.map(serde_json::from_str).transpose()?)
}

/// The steps a completion reads, checked by [`required_steps`]: the
/// channels, the business and the voice agent.
fn ready<'s>(session: &'s Session) -> Result<(Vec<String>, Company<'s>, Option<StoredVapi<'s>>)> {
    let channels = session.channels()?;
    let business = stored::<Company>(session.data(Step::Business))?;
    let vapi = stored::<StoredVapi>(session.data(Step::Vapi))?;
    let company = required_steps(session, business, vapi.is_some(), &channels)?;
    Ok((channels, company, vapi))
}

/// Completion needs `business`, and `vapi` when the channels include
/// `phone`; otherwise `incomplete`, naming every missing step. Answers the
/// business.
fn required_steps<'t>(
    session: &Session,
    business: Option<Company<'t>>,
    has_vapi: bool,
    channels: &[String],
) -> Result<Company<'t>> {
    let mut missing = Vec::new();
    if business.is_none() {
        missing.push(Step::Business.name());
    }
    if !has_vapi && channels.iter().any(|c| c == "phone") {
        missing.push(Step::Vapi.name());
    }
    match business {
        Some(company) if missing.is_empty() => Ok(company),
        _ => Err(Error::new(
            ErrorKind::Incomplete,
            format!(
                "session {} is missing steps: {} (save them before completing)",
                quote(session.id),
                missing.join(", ")
            ),
        )),
    }
}

/// The business step's data. The texts borrow the stored JSON unless it
/// escapes a character.
#[derive(Deserialize)]
struct Company<'t> {
    #[serde(borrow, rename = "company_name")]
    name: Cow<'t, str>,
    #[serde(borrow)]
    email: Cow<'t, str>,
    /// E.164.
    #[serde(borrow)]
    phone: Cow<'t, str>,
    #[serde(borrow)]
    industry: Cow<'t, str>,
}

/// The vapi step's data.
#[derive(Deserialize)]
struct StoredVapi<'t> {
    #[serde(borrow)]
    agent_type: Cow<'t, str>,
    #[serde(borrow)]
    assistant_name: Cow<'t, str>,
    #[serde(borrow)]
    voice: Cow<'t, str>,
}

/// The kb step's data: `crawl_url` with `website`, `documents` with
/// `documents`.
#[derive(Deserialize)]
struct StoredKb<'t> {
    #[serde(borrow)]
    method: Cow<'t, str>,
    #[serde(borrow, default)]
    crawl_url: Option<Cow<'t, str>>,
    #[serde(borrow, default)]
    documents: Vec<StoredDocument<'t>>,
}

#[derive(Deserialize)]
struct StoredDocument<'t> {
    #[serde(borrow)]
    title: Cow<'t, str>,
    #[serde(borrow)]
    content: Cow<'t, str>,
}

/// The tenant's booking settings, as the tenant part reads them back.
struct Booking {
    provider: Option<String>,
    event_type_id: Option<String>,
    timezone: String,
}

/// What every part needs: where to write, for which session, at what time.
struct Part<'a> {
    conn: &'a Connection,
    session: &'a Session<'a>,
    /// The channels chosen (or the default `["phone"]`).
    channels: &'a [String],
    now: &'a str,
}

impl Part<'_> {
    /// `tenants`: the business's name, email, phone and sector, and done.
    /// The business step checked the email, but another tenant may have
    /// completed with it since: the UNIQUE constraint has the last word.
    /// Answers the booking settings the campaign needs (read after the
    /// UPDATE rather than through RETURNING, which costs an ephemeral table).
    fn tenant(&self, company: &Company<'_>) -> Result<Booking> {
        sql::execute(
            self.conn,
            "UPDATE main.tenants SET name = ?1, company_name = ?1, email = ?2, phone = ?3, sector = ?4,
                    onboarding_completed = 1, updated_at = ?5
             WHERE id = ?6",
            (
                &*company.name,
                &*company.email,
                &*company.phone,
                &*company.industry,
                self.now,
                &self.session.tenant_id,
            ),
        )
        .map_err(|e| match &e {
            rusqlite::Error::SqliteFailure(f, Some(text))
                if f.code == rusqlite::ErrorCode::ConstraintViolation
                    && text.contains("tenants.email") =>
            {
                email_taken(&company.email)
            }
            _ => e.into(),
        })
        .and_then(|written| one_row(written, "tenants"))?;
        Ok(sql::query_row(
            self.conn,
            "SELECT booking_provider, cal_com_event_type_id, timezone FROM main.tenants WHERE id = ?1",
            [&self.session.tenant_id],
            |r| {
                Ok(Booking {
                    provider: r.get(0)?,
                    event_type_id: r.get(1)?,
                    timezone: r.get(2)?,
                })
            },
        )?)
    }

    /// `omni_agent_configs`, one row per tenant: the agent type, name and
    /// voice of the vapi step (or the defaults), with the prompt and the
    /// greeting rendered from the agent type's templates.
    fn agent_config<'s>(
        &'s self,
        vapi: Option<&'s StoredVapi<'_>>,
        company_name: &str,
    ) -> Result<AgentConfig<'s>> {
        let (agent_type_id, agent_name, voice_choice) = match vapi {
            None => (DEFAULT_AGENT_TYPE, DEFAULT_ASSISTANT_NAME, DEFAULT_VOICE),
            Some(v) => (&*v.agent_type, &*v.assistant_name, &*v.voice),
        };
        let agent = catalog::agent_type(agent_type_id).ok_or_else(|| {
            Error::internal(format!(
                "stored agent_type {} is unknown",
                quote(agent_type_id)
            ))
        })?;
        let voice = catalog::resolve_voice(voice_choice).ok_or_else(|| {
            Error::internal(format!("stored voice {} is unknown", quote(voice_choice)))
        })?;
        // The prompt speaks of the agent as its voice sounds.
        let gender = catalog::Gender::of(voice);
        sql::execute(
            self.conn,
            "INSERT INTO main.omni_agent_configs (tenant_id, agent_type, agent_name, agent_personality,
                 voice_provider, voice_id, voice_language, system_prompt, greeting_message,
                 channels_config, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)
             ON CONFLICT (tenant_id) DO UPDATE SET
                 agent_type = excluded.agent_type, agent_name = excluded.agent_name,
                 agent_personality = excluded.agent_personality,
                 voice_provider = excluded.voice_provider, voice_id = excluded.voice_id,
                 voice_language = excluded.voice_language, system_prompt = excluded.system_prompt,
                 greeting_message = excluded.greeting_message,
                 channels_config = excluded.channels_config, updated_at = excluded.updated_at",
            rusqlite::params![
                &self.session.tenant_id,
                agent.id,
                agent_name,
                catalog::personality(agent, gender),
                catalog::VOICE_PROVIDER,
                voice.provider_voice_id,
                catalog::VOICE_LANGUAGE,
                catalog::system_prompt(agent, agent_name, company_name, gender),
                catalog::render(agent.greeting, agent_name, company_name, gender),
                json::to_text(&ChannelsConfig(self.channels)),
                self.now,
            ],
        )
        .map_err(Error::from)
        .and_then(|written| one_row(written, "omni_agent_configs"))?;
        Ok(AgentConfig {
            agent_type: agent.id,
            agent_name,
            voice_provider: catalog::VOICE_PROVIDER,
            voice_id: voice.provider_voice_id,
            voice_language: catalog::VOICE_LANGUAGE,
            channels: self.channels,
        })
    }

    /// `omni_phone_mappings`: the business phone, declared. A number routes
    /// calls to a tenant, so it is never taken from another tenant: the row
    /// starts inactive, pending verification; verified (by a code checked
    /// before completion) it is verified, and active unless another tenant
    /// has the number active.
    fn phone_mapping<'p>(&self, phone: &'p str) -> Result<PhoneMapping<'p>> {
        let (tenant, session) = (&self.session.tenant_id, &self.session.id);
        let verified = verification::verified_for(self.conn, session, phone)?;
        let active = verified && !verification::active_elsewhere(self.conn, tenant, phone)?;
        let status = if verified {
            "verified"
        } else {
            "pending_verification"
        };
        // A row the tenant already had: verified makes it verified, whatever
        // it held (the runtime's pending row), as a code checked after
        // completion does (`phone::activate`); otherwise it is left as it
        // is (no change: read back below).
        let written = sql::execute(
            self.conn,
            "INSERT INTO main.omni_phone_mappings (phone_number, tenant_id, is_active, status,
                                              created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT (tenant_id, phone_number) DO UPDATE SET
                 status = excluded.status, is_active = excluded.is_active,
                 updated_at = excluded.updated_at
             WHERE excluded.status = 'verified'",
            (phone, tenant, active, status, self.now),
        )?;
        if written == 0 {
            return self.phone_mapping_kept(phone);
        }
        Ok(PhoneMapping {
            phone_number: phone,
            status,
            is_active: active,
            reason: (verified && !active).then(|| verification::active_elsewhere_reason(phone)),
        })
    }

    /// The tenant's mapping of `phone` as the table already held it (the
    /// runtime or the host wrote it before completion), which the sync of
    /// a number not verified leaves as it is: the answer says what routes
    /// calls, not what a new row would have said.
    fn phone_mapping_kept<'p>(&self, phone: &'p str) -> Result<PhoneMapping<'p>> {
        let tenant = &self.session.tenant_id;
        let (stored, is_active): (String, bool) = sql::query_row(
            self.conn,
            "SELECT status, is_active FROM main.omni_phone_mappings
             WHERE tenant_id = ?1 AND phone_number = ?2",
            (tenant, phone),
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        // No row written and none there: a trigger ignored the insert.
        .ok_or_else(|| unwritten("omni_phone_mappings"))?;
        // The statuses the schema allows (its CHECK); the answer's field
        // is one of them.
        let status = match stored.as_str() {
            "verified" => "verified",
            "rejected" => "rejected",
            _ => "pending_verification",
        };
        // A verified mapping kept inactive says why, as onboarding_get does.
        let reason = if status == "verified" && !is_active {
            Some(verification::inactive_reason(self.conn, tenant, phone)?)
        } else {
            None
        };
        Ok(PhoneMapping {
            phone_number: phone,
            status,
            is_active,
            reason,
        })
    }

    /// `omnichannel_campaigns`: an appointment campaign, only when
    /// appointments are configured: by the appointments step (unless it
    /// said `"enabled": false`), or by a booking setting on the tenant, a
    /// provider or an event type (the two the step writes), however it got
    /// there; `null` otherwise. A step that declined cleared both, so a
    /// setting found at completion was set after it, and configures them.
    /// (A Cal.com API key alone books nothing: it is not one.)
    fn campaign(&self, booking: Booking, company_name: &str) -> Result<Option<Campaign<'_>>> {
        let by_step = self
            .session
            .data(Step::Appointments)
            .is_some_and(|data| !declined(data));
        let configured = by_step || booking.provider.is_some() || booking.event_type_id.is_some();
        if !configured {
            return Ok(None);
        }
        let name = format!("Prise de rendez-vous – {company_name}");
        let settings = CampaignSettings {
            provider: booking.provider.unwrap_or_else(|| "cal_com".to_string()),
            event_type_id: booking.event_type_id,
            timezone: booking.timezone,
        };
        sql::execute(
            self.conn,
            "INSERT INTO main.omnichannel_campaigns (tenant_id, name, campaign_type, channels,
                                               status, settings, created_at, updated_at)
             VALUES (?1, ?2, 'appointment', ?3, 'active', ?4, ?5, ?5)
             ON CONFLICT (tenant_id, campaign_type) DO UPDATE SET
                 name = excluded.name, channels = excluded.channels,
                 status = excluded.status, settings = excluded.settings,
                 updated_at = excluded.updated_at",
            (
                &self.session.tenant_id,
                &name,
                json::to_text(&self.channels),
                json::to_text(&settings),
                self.now,
            ),
        )
        .map_err(Error::from)
        .and_then(|written| one_row(written, "omnichannel_campaigns"))?;
        Ok(Some(Campaign {
            name,
            campaign_type: "appointment",
            status: "active",
            channels: self.channels,
            settings,
        }))
    }

    /// The knowledge base: for a website, a queued `kb_crawl_jobs` row; for
    /// documents, each one stored and indexed now (`kb_documents`,
    /// `kb_chunks`, `kb_chunks_index`); `null` when the kb step was not saved.
    fn knowledge_base<'k>(
        &self,
        kb: Option<&'k StoredKb<'_>>,
    ) -> Result<Option<KnowledgeBase<'k>>> {
        let Some(kb) = kb else {
            return Ok(None);
        };
        let method = &*kb.method;
        let crawl_job = if method == "website" {
            let url = kb
                .crawl_url
                .as_deref()
                .ok_or_else(|| Error::internal("stored step data lacks crawl_url"))?;
            sql::execute(
                self.conn,
                "INSERT INTO main.kb_crawl_jobs (tenant_id, session_id, url, status, created_at,
                                            updated_at)
                 VALUES (?1, ?2, ?3, 'queued', ?4, ?4)",
                (&self.session.tenant_id, &self.session.id, url, self.now),
            )
            .map_err(Error::from)
            .and_then(|written| one_row(written, "kb_crawl_jobs"))?;
            Some(CrawlJob {
                url,
                status: "queued",
            })
        } else {
            None
        };
        let listed: &[StoredDocument<'_>] = if method == "documents" {
            &kb.documents
        } else {
            &[]
        };
        let documents = self.documents(listed)?;
        let documents = (method == "documents").then_some(documents);
        Ok(Some(KnowledgeBase {
            method,
            crawl_job,
            documents,
        }))
    }

    /// The kb step's documents (validated when saved), each stored and cut
    /// into indexed chunks: `{"documents_stored","chunks"}`. A document
    /// `onboarding_kb_prepare` stored ahead is counted as stored here, its
    /// time made the completion's. The kb step saved again removes what was
    /// prepared; any pasted document the step does not list (a row written
    /// by hand) goes here too, so that the tenant's pasted knowledge is
    /// exactly the step's, however it was prepared.
    fn documents(&self, documents: &[StoredDocument<'_>]) -> Result<DocumentsStored> {
        let tenant_id = &self.session.tenant_id;
        let identities: Vec<String> = documents
            .iter()
            .enumerate()
            .map(|(item, doc)| store::Source::Documents { item }.identity(&doc.content))
            .collect();
        for (id, identity) in store::pasted(self.conn, tenant_id)? {
            if !identities.contains(&identity) {
                store::delete(self.conn, id)?;
            }
        }
        let mut chunks = 0;
        for (item, doc) in documents.iter().enumerate() {
            let new = pasted_item(tenant_id, item, doc, self.now);
            chunks += match store_item(self.conn, &new, &identities[item])? {
                store::Stored::New { chunks, .. } => chunks,
                store::Stored::Duplicate { id } => {
                    sql::execute(
                        self.conn,
                        "UPDATE main.kb_documents SET fetched_at = ?2 WHERE id = ?1",
                        (id, self.now),
                    )?;
                    store::chunk_count(self.conn, id)?
                }
            };
        }
        Ok(DocumentsStored {
            documents_stored: documents.len(),
            chunks,
        })
    }

    /// `onboarding_analytics`: the last step's time, the total, done.
    /// Answers the total in whole seconds.
    fn completion_time(&self, now_ms: i64) -> Result<i64> {
        let started_at = &self.session.started_at;
        let started_ms = parse_iso8601(started_at).ok_or_else(|| {
            Error::internal(format!(
                "stored started_at {} is unreadable",
                quote(started_at)
            ))
        })?;
        let duration_seconds = (now_ms - started_ms).max(0) / 1000;
        let on = OnStep {
            session_id: self.session.id,
            step: self.session.current_step,
            since: &self.session.step_started_at,
        };
        analytics::credit_last_step(self.conn, &on, now_ms, duration_seconds, self.now)?;
        Ok(duration_seconds)
    }

    /// The session: completed, and the answer kept for retries.
    fn session_done(&self, result: &str) -> Result<()> {
        const DONE: RowUpdate = row_update!(
            "status = 'completed', current_step = ?4, progress_percentage = ?5,
             completed_at = ?1, last_updated_at = ?1, step_started_at = ?1,
             completion_result = ?2",
            "?3",
            "?6"
        );
        DONE.run(
            self.conn,
            (
                self.now,
                result,
                self.session.rowid,
                Progress::COMPLETED.step,
                Progress::COMPLETED.percentage,
                &self.session.id,
            ),
        )
        .and_then(|written| one_row(written, "onboarding_sessions"))
    }
}

/// Whether the appointments step's stored data says "no appointments"
/// (`"enabled": false`, which only that step writes).
fn declined(data: &str) -> bool {
    #[derive(Deserialize)]
    struct Enabled {
        enabled: Option<bool>,
    }
    serde_json::from_str::<Enabled>(data).is_ok_and(|e| e.enabled == Some(false))
}

/// A sync write that must write one row: none written means a trigger of
/// the host's ignored it (`RAISE(IGNORE)`), and the completion would
/// answer `success:true` for a row the runtime never finds.
fn one_row(written: usize, table: &str) -> Result<()> {
    match written {
        0 => Err(unwritten(table)),
        _ => Ok(()),
    }
}

fn unwritten(table: &str) -> Error {
    Error::internal(format!(
        "the sync wrote no row to {table} (a trigger of this connection ignored the write); \
         nothing of the completion is kept"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Completion's answer written out equals its `Serialize` impl's text,
    /// part by part: with and without a campaign, each knowledge-base
    /// shape, a phone mapping with a reason, and texts that need escapes.
    #[test]
    fn the_written_out_answer_is_the_serialized_one() {
        let channels = vec!["phone".to_string(), "sms".to_string()];
        let no_channels: Vec<String> = Vec::new();
        let answer = |phone_reason: Option<&str>,
                      campaign: Option<Campaign<'_>>,
                      knowledge_base: Option<KnowledgeBase<'_>>| {
            let completed = Completed {
                success: true,
                message: SUCCESS_MESSAGE,
                session_id: "onb_0197",
                tenant_id: "tenant_0197",
                duration_seconds: 342,
                duration_minutes: 6,
                sync_status: "synced",
                already_completed: false,
                synced: Synced {
                    agent_config: AgentConfig {
                        agent_type: "real_estate_reception",
                        agent_name: "Sara \"la\" \\ voix\n\u{1}",
                        voice_provider: catalog::VOICE_PROVIDER,
                        voice_id: "voice-id",
                        voice_language: catalog::VOICE_LANGUAGE,
                        channels: &channels,
                    },
                    phone_mapping: PhoneMapping {
                        phone_number: "+33612345678",
                        status: "verified",
                        is_active: phone_reason.is_none(),
                        reason: phone_reason.map(str::to_string),
                    },
                    campaign,
                    knowledge_base,
                },
            };
            (completed.to_json(), json::to_text(&completed))
        };
        let campaign = |event_type_id: Option<&str>, channels| Campaign {
            name: "Prise de rendez-vous – L'Agence \u{7f}".to_string(),
            campaign_type: "appointment",
            status: "active",
            channels,
            settings: CampaignSettings {
                provider: "cal_com".to_string(),
                event_type_id: event_type_id.map(str::to_string),
                timezone: "Europe/Paris".to_string(),
            },
        };
        let website = KnowledgeBase {
            method: "website",
            crawl_job: Some(CrawlJob {
                url: "https://mon-site.fr/a?b=\"c\"",
                status: "queued",
            }),
            documents: None,
        };
        let documents = KnowledgeBase {
            method: "documents",
            crawl_job: None,
            documents: Some(DocumentsStored {
                documents_stored: 2,
                chunks: 17,
            }),
        };
        let none = KnowledgeBase {
            method: "none",
            crawl_job: None,
            documents: None,
        };
        let cases = [
            answer(None, None, None),
            answer(Some("taken elsewhere"), None, Some(website)),
            answer(None, Some(campaign(Some("42"), &channels)), Some(documents)),
            answer(None, Some(campaign(None, &no_channels)), Some(none)),
        ];
        for (written, serialized) in &cases {
            assert_eq!(written, serialized);
        }
        assert!(cases[0].0.starts_with(
            r#"{"success":true,"message":"Onboarding terminé avec succès ! 🎉","session_id":"onb_0197","#
        ));
        assert!(cases[0]
            .0
            .contains(r#""agent_name":"Sara \"la\" \\ voix\n\u0001","#));
        assert!(cases[0]
            .0
            .ends_with(r#""campaign":null,"knowledge_base":null}}"#));
        assert!(cases[1]
            .0
            .contains(r#""is_active":false,"reason":"taken elsewhere"}"#));
    }
}
