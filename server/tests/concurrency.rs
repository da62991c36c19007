//! Many clients completing one session at once: one sync, one answer.
mod common;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use common::*;
use onboarding::{Env, PinnedEnv};
use serde_json::json;

/// A clock that moves one second every time it is read: if two calls synced
/// the session, their durations and timestamps would differ.
struct TickingClock {
    now_ms: AtomicI64,
    random: Arc<PinnedEnv>,
}

impl Env for TickingClock {
    fn now_ms(&self) -> i64 {
        self.now_ms.fetch_add(1_000, Ordering::SeqCst)
    }

    fn fill_random(&self, buf: &mut [u8]) -> Result<(), String> {
        self.random.fill_random(buf)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_completions_sync_once_and_answer_alike() {
    let (mut config, dir) = temp_config();
    config.env = Some(Arc::new(TickingClock {
        now_ms: AtomicI64::new(T0_MS),
        random: pinned_env(),
    }));
    let mut server = TestServer::start(config, dir).await;
    let id = completable_session(&server).await;
    let reply = server.post(&session_path(&id, "kb"), KB).await;
    assert_eq!(reply.status, 200);

    let path = session_path(&id, "complete");
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (addr, path) = (server.addr, path.clone());
            tokio::spawn(async move { request(addr, "POST", &path, &[], b"{}").await })
        })
        .collect();
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await.expect("client task"));
    }
    assert!(replies.iter().all(|r| r.status == 200));
    let bodies: Vec<serde_json::Value> = replies.iter().map(Reply::json).collect();
    let first: Vec<_> = bodies
        .iter()
        .filter(|b| b["already_completed"] == json!(false))
        .collect();
    assert_eq!(first.len(), 1, "exactly one call synced");
    let synced = first[0];
    for body in &bodies {
        assert_eq!(body["duration_seconds"], synced["duration_seconds"]);
        assert_eq!(body["duration_minutes"], synced["duration_minutes"]);
        // A replay is the first answer with `already_completed` set.
        let mut replay = synced.clone();
        replay["already_completed"] = body["already_completed"].clone();
        assert_eq!(*body, replay);
    }

    server.stop().await;
    let db = server.read_db();
    let agent = rows(&db, "omni_agent_configs");
    assert_eq!(agent.len(), 1);
    // Written once: a second sync would have moved updated_at on.
    assert_eq!(agent[0]["created_at"], agent[0]["updated_at"]);
    assert_eq!(rows(&db, "omni_phone_mappings").len(), 1);
    assert_eq!(rows(&db, "kb_crawl_jobs").len(), 1);
    assert_eq!(rows(&db, "omnichannel_campaigns").len(), 0);
    let analytics = rows(&db, "onboarding_analytics");
    assert_eq!(analytics[0]["completed"], 1);
    assert_eq!(
        analytics[0]["total_duration_seconds"],
        synced["duration_seconds"]
    );
}
