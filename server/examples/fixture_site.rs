//! The crawler tests' fixture site (a small French hair salon, with every
//! case the crawler must handle) served on 127.0.0.1 until Ctrl-C, to try
//! the crawler by hand: prints the site's URL. `--js-only` serves the
//! JavaScript-only variant.
//!
//! ```text
//! cargo run -p onboarding-server --example fixture_site
//! ```

#[allow(dead_code)] // the request log serves the tests only
#[path = "../tests/common/fixture.rs"]
mod fixture;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let js_only = std::env::args().any(|a| a == "--js-only");
    let site = fixture::Fixture::start(js_only).await;
    println!("{}", site.url("/"));
    let _ = tokio::signal::ctrl_c().await;
}
