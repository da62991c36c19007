//! Debian's headless Chromium driven through chromedriver (WebDriver) with
//! fantoccini: both started on loopback for one test and stopped after it,
//! and every wait a bounded poll of a condition in the page.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The longest any condition is waited for: far above what a step takes on
/// a loaded two-core machine, far below a hung test.
pub const WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

/// WebDriver's codes for the keys the keyboard test presses.
pub const TAB: char = '\u{E004}';
pub const ENTER: char = '\u{E007}';
pub const SPACE: char = '\u{E00D}';
pub const UP: char = '\u{E013}';
pub const DOWN: char = '\u{E015}';
const CONTROL: char = '\u{E009}';

pub struct Browser {
    pub client: Client,
    /// The server's origin, e.g. `http://127.0.0.1:40123`.
    pub base: String,
    _driver: Driver,
    _profile: tempfile::TempDir,
}

/// chromedriver, and the browser it starts, in a process group of their own:
/// dropping it ends them all, even when a test fails half-way. When the test
/// binary itself dies first (killed by `scripts/run-tests`' `--timeout`,
/// Ctrl-C, a signal), nothing drops it: chromedriver is then killed by the
/// kernel (`PR_SET_PDEATHSIG`: when the thread that started it ends, here the
/// test's own thread, which outlives the browser), and Chromium, which talks
/// to it over a pipe
/// (`--remote-debugging-pipe`) rather than a port, exits on the pipe's end.
/// (Over a port, Chromium outlived its chromedriver: measured.)
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

impl Browser {
    /// Chromium with a fresh profile, its window `width` × `height` CSS
    /// pixels, ready to open pages of `base`.
    pub async fn start(base: &str, width: u32, height: u32) -> Browser {
        for program in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(program).exists(),
                "{program} is missing: install Debian's chromium and chromium-driver (.ci/run does)"
            );
        }
        let profile = tempfile::tempdir().expect("profile directory");
        // The browser's clock reads in Paris time, as the tenant's does
        // (the code's expiry is shown as a time of day).
        // chromedriver chooses its port itself (--port=0) and exits when it
        // cannot take it on both loopbacks ("IPv6 port not available.
        // Exiting..."), a race with the ports other processes take, which a
        // second browser and the test binaries running beside this one
        // (scripts/run-tests) make likelier: such an exit, and no other, is
        // started again, at most twice.
        let mut exits = Vec::new();
        let (driver, port) = loop {
            let mut command = Command::new(CHROMEDRIVER);
            command
                .arg("--port=0")
                .env("TZ", "Europe/Paris")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0);
            let test_binary = std::process::id();
            // SAFETY: the hook makes two system calls and builds an error
            // from a number, as allowed between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // Dead already, before the line above: no signal comes.
                    if u32::try_from(libc::getppid()) != Ok(test_binary) {
                        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                    }
                    Ok(())
                });
            }
            let mut driver = command.spawn().expect("start chromedriver");
            match driver_port(&mut driver) {
                Ok(port) => break (Driver(driver), port),
                Err(exit) if exit.port_race => exits.push(exit.text),
                Err(exit) => panic!("{}", exit.text),
            }
            assert!(exits.len() < 3, "chromedriver exited 3 times: {exits:#?}");
        };
        // The flags this machine needs (rust.md): no sandbox as root, and no
        // background networking, whose refused connections slow every start.
        let args = [
            "--headless".to_string(),
            "--no-sandbox".to_string(),
            "--disable-gpu".to_string(),
            "--disable-quic".to_string(),
            "--no-first-run".to_string(),
            "--disable-background-networking".to_string(),
            "--disable-component-update".to_string(),
            "--disable-sync".to_string(),
            "--disable-dev-shm-usage".to_string(),
            "--lang=fr-FR".to_string(),
            "--hide-scrollbars".to_string(),
            // Exits when chromedriver does (see Driver).
            "--remote-debugging-pipe".to_string(),
            format!("--user-data-dir={}", profile.path().display()),
            format!("--window-size={width},{height}"),
        ];
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = tokio::time::timeout(
            Duration::from_secs(60),
            ClientBuilder::new(connector)
                .capabilities(capabilities)
                .connect(&format!("http://127.0.0.1:{port}")),
        )
        .await
        .expect("Chromium starts within a minute")
        .expect("a WebDriver session");
        let browser = Browser {
            client,
            base: base.to_string(),
            _driver: driver,
            _profile: profile,
        };
        let inner = browser
            .eval("return [window.innerWidth, window.innerHeight]")
            .await;
        if inner != json!([width, height]) {
            // The window's frame, if any, is outside the page: grow the
            // window by the difference so the page gets the size asked for.
            browser
                .client
                .set_window_size(width, height)
                .await
                .expect("resize");
            let inner = browser.eval("return window.innerWidth").await;
            assert_eq!(inner, json!(width), "the page is {width} CSS pixels wide");
        }
        browser
    }

    /// Opens `path` of the server.
    pub async fn open(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|e| panic!("open {path}: {e}"));
    }

    pub async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script failed ({e}): {script}"))
    }

    /// Polls `expression` (JavaScript) until it is truthy and answers its
    /// value; fails after [`WAIT`] with what it last saw and the page's state.
    pub async fn until(&self, what: &str, expression: &str) -> Value {
        let script = format!("try {{ return ({expression}); }} catch (e) {{ return null; }}");
        let started = Instant::now();
        loop {
            let value = self.eval(&script).await;
            let truthy = match &value {
                Value::Null | Value::Bool(false) => false,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return value;
            }
            if started.elapsed() > WAIT {
                let page = self.eval(STATE).await;
                panic!(
                    "waited {WAIT:?} for {what} ({expression}); last value {value}; page {page}"
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the wizard shows `step` and only it, whatever has the focus.
    pub async fn showing(&self, step: &str) {
        self.until(
            &format!("the step {step}"),
            &format!(
                "[...document.querySelectorAll('.step')].filter(s => !s.hidden).map(s => s.dataset.step).join() === '{step}'"
            ),
        )
        .await;
    }

    /// Waits until the wizard shows `step` (and only it) with its heading
    /// focused: how a step starts.
    pub async fn step(&self, step: &str) {
        self.until(
            &format!("the step {step}"),
            &format!(
                "[...document.querySelectorAll('.step')].filter(s => !s.hidden).map(s => s.dataset.step).join() === '{step}' \
                 && document.activeElement && document.activeElement.id === 'h-{step}'"
            ),
        )
        .await;
    }

    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("find {css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Empties the field `id` and types `text` into it.
    pub async fn fill(&self, id: &str, text: &str) {
        let field = self
            .client
            .find(Locator::Id(id))
            .await
            .unwrap_or_else(|e| panic!("find #{id}: {e}"));
        field
            .clear()
            .await
            .unwrap_or_else(|e| panic!("clear #{id}: {e}"));
        field
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type into #{id}: {e}"));
    }

    /// The value of the field `id`.
    pub async fn value(&self, id: &str) -> String {
        let value = self
            .eval(&format!("return document.getElementById('{id}').value"))
            .await;
        value
            .as_str()
            .unwrap_or_else(|| panic!("#{id} has no value"))
            .to_string()
    }

    /// The element's `textContent`: its text without the layout's line
    /// breaks.
    pub async fn text_content(&self, id: &str) -> String {
        let text = self
            .eval(&format!(
                "return document.getElementById('{id}').textContent"
            ))
            .await;
        text.as_str()
            .unwrap_or_else(|| panic!("no #{id}"))
            .to_string()
    }

    /// The text of the element `id` as shown (`innerText`).
    pub async fn text(&self, id: &str) -> String {
        let text = self
            .eval(&format!("return document.getElementById('{id}').innerText"))
            .await;
        text.as_str()
            .unwrap_or_else(|| panic!("no #{id}"))
            .to_string()
    }

    /// The id of the focused element.
    pub async fn focused(&self) -> String {
        let id = self
            .eval("return document.activeElement ? document.activeElement.id : ''")
            .await;
        id.as_str().unwrap_or("").to_string()
    }

    /// Presses and releases `key` wherever the focus is (no element is
    /// targeted, as with a real keyboard).
    pub async fn press(&self, key: char) {
        let actions = KeyActions::new("keyboard".to_string())
            .then(KeyAction::Down { value: key })
            .then(KeyAction::Up { value: key });
        self.client
            .perform_actions(actions)
            .await
            .unwrap_or_else(|e| panic!("press {key:?}: {e}"));
    }

    /// Ctrl+A: selects the focused field's text, to type over it.
    pub async fn select_all(&self) {
        let actions = KeyActions::new("keyboard".to_string())
            .then(KeyAction::Down { value: CONTROL })
            .then(KeyAction::Down { value: 'a' })
            .then(KeyAction::Up { value: 'a' })
            .then(KeyAction::Up { value: CONTROL });
        self.client
            .perform_actions(actions)
            .await
            .expect("press Ctrl+A");
    }

    /// Types `text` key by key into whatever has the focus.
    pub async fn type_text(&self, text: &str) {
        let mut actions = KeyActions::new("keyboard".to_string());
        for c in text.chars() {
            actions = actions
                .then(KeyAction::Down { value: c })
                .then(KeyAction::Up { value: c });
        }
        self.client
            .perform_actions(actions)
            .await
            .unwrap_or_else(|e| panic!("type {text:?}: {e}"));
    }

    /// Presses Tab until `id` has the focus, at most `limit` times: what a
    /// keyboard user does, and a check that `id` is reachable that way.
    pub async fn tab_to(&self, id: &str, limit: usize) {
        for _ in 0..limit {
            self.press(TAB).await;
            if self.focused().await == id {
                return;
            }
        }
        panic!(
            "#{id} not reached in {limit} presses of Tab (focus on #{})",
            self.focused().await
        );
    }

    /// A PNG of the whole page, however long, written to `path`.
    pub async fn screenshot(&self, path: &std::path::Path) {
        use base64::Engine as _;
        let size = self
            .eval("return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
            .await;
        // WebDriver's screenshot stops at the window, which cannot outgrow
        // the headless screen; DevTools' own capture goes beyond it.
        let shot = self
            .client
            .issue_cmd(DevTools {
                cmd: "Page.captureScreenshot",
                params: json!({
                    "format": "png",
                    "captureBeyondViewport": true,
                    "clip": { "x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1 },
                }),
            })
            .await
            .expect("DevTools screenshot");
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64 PNG");
        std::fs::create_dir_all(path.parent().unwrap()).expect("screenshot directory");
        std::fs::write(path, png).expect("write screenshot");
    }

    /// Cuts the browser off the network (`true`) or gives it back: requests
    /// fail as they do when the connection drops.
    pub async fn offline(&self, offline: bool) {
        // Conditions apply to a page whose network domain is on.
        self.client
            .issue_cmd(DevTools {
                cmd: "Network.enable",
                params: json!({}),
            })
            .await
            .expect("DevTools network domain");
        self.client
            .issue_cmd(DevTools {
                cmd: "Network.emulateNetworkConditions",
                params: json!({
                    "offline": offline,
                    "latency": 0,
                    "downloadThroughput": -1,
                    "uploadThroughput": -1,
                }),
            })
            .await
            .expect("DevTools network conditions");
    }

    /// Makes the requests whose URL matches one of `patterns` (`*` for any
    /// text) fail as a dropped connection does, the page's own and its
    /// assets' still answered; `&[]` lets every request through again.
    pub async fn block(&self, patterns: &[&str]) {
        for (cmd, params) in [
            ("Network.enable", json!({})),
            ("Network.setBlockedURLs", json!({ "urls": patterns })),
        ] {
            self.client
                .issue_cmd(DevTools { cmd, params })
                .await
                .unwrap_or_else(|e| panic!("DevTools {cmd}: {e}"));
        }
    }

    /// Ends the WebDriver session (and so Chromium), then chromedriver.
    pub async fn quit(self) {
        let _ = tokio::time::timeout(Duration::from_secs(30), self.client.clone().close()).await;
    }
}

/// chromedriver's passthrough to the DevTools protocol
/// (`POST /session/{id}/goog/cdp/execute`).
#[derive(Debug)]
struct DevTools {
    cmd: &'static str,
    params: Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for DevTools {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/goog/cdp/execute",
            session.unwrap_or("")
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({ "cmd": self.cmd, "params": self.params });
        (http::Method::POST, Some(body.to_string()))
    }
}

/// What a failed wait prints about the page.
const STATE: &str = "return JSON.stringify({
    url: location.pathname,
    steps: [...document.querySelectorAll('.step')].filter(s => !s.hidden).map(s => s.dataset.step),
    focus: document.activeElement && (document.activeElement.id || document.activeElement.tagName),
    errors: [...document.querySelectorAll('.field-error, .form-error, #offline, #loading')]
        .filter(e => !e.hidden && e.textContent).map(e => e.id + ': ' + e.textContent),
})";

/// chromedriver exiting before it said its port.
struct DriverExit {
    /// Its exit status and what it printed.
    text: String,
    /// It said it could not take the port it chose.
    port_race: bool,
}

/// Reads chromedriver's "started successfully on port N" line (within 30 s),
/// then keeps draining its output so it never blocks on a full pipe. If it
/// exits instead, the error says how and quotes what it printed; if it
/// stays silent, the panic does.
fn driver_port(driver: &mut Child) -> Result<u16, DriverExit> {
    let pid = driver.id();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = driver.stdout.take().expect("chromedriver stdout");
    let stderr = driver.stderr.take().expect("chromedriver stderr");
    let readers: [Box<dyn std::io::Read + Send>; 2] = [Box::new(stdout), Box::new(stderr)];
    for output in readers {
        let tx = tx.clone();
        // Read to the end, whatever the bytes: a pipe left unread fills and
        // blocks chromedriver.
        std::thread::spawn(move || {
            let mut output = BufReader::new(output);
            let mut line = Vec::new();
            while output.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                let text = String::from_utf8_lossy(&line).trim_end().to_string();
                let _ = tx.send(Some(text));
                line.clear();
            }
            let _ = tx.send(None);
        });
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut printed = Vec::new();
    let mut closed = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Some(line)) => {
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    let port = rest.trim_end_matches('.').trim();
                    return Ok(port
                        .parse()
                        .unwrap_or_else(|_| panic!("chromedriver port {port:?}")));
                }
                printed.push(line);
            }
            Ok(None) => {
                closed += 1;
                if closed == 2 {
                    let status = match driver.wait() {
                        Ok(status) => status.to_string(),
                        Err(e) => format!("its status unknown: {e}"),
                    };
                    return Err(DriverExit {
                        port_race: printed.iter().any(|l| l.contains("port not available")),
                        text: format!(
                            "chromedriver (pid {pid}) exited ({status}); it printed: {printed:?}"
                        ),
                    });
                }
            }
            Err(_) => break,
        }
    }
    let _ = driver.kill();
    let _ = driver.wait();
    panic!("chromedriver (pid {pid}) did not say its port within 30 s; it printed: {printed:?}");
}
