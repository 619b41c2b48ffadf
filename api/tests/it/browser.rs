//! The example page (`examples/cookie-session/`) driven end to end in
//! headless Chromium: served from its own origin (`http://localhost:<port>`,
//! in `CORS_ALLOWED_ORIGINS`), against the api at `http://localhost:<port>`,
//! so the `__Host-` cookies, CORS with credentials and the CSRF check all
//! take part as they do for a real front end.
//!
//! Chromium is Debian's `chromium` (`/usr/bin/chromium`, or `$CHROMIUM`),
//! controlled over the DevTools protocol on `--remote-debugging-pipe`:
//! JSON messages ending in a NUL byte, read by the browser from fd 3 and
//! written to fd 4. The test types into the form and clicks the buttons with
//! real input events (`Input.insertText`, `Input.dispatchMouseEvent`), and
//! reads the DOM, the page's network answers and the api's sessions.
//! Without Chromium the test is skipped with a message, unless `CI=true`
//! (`scripts/test` installs it), where it fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use infra::testing::eventually;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::support::{login, spawn_app_with, TestApp, GOOD_PASSWORD};

const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";
/// How long one protocol call, or one wait for the page, may take.
const WAIT: Duration = Duration::from_secs(20);

/// The Chromium binary to use: `$CHROMIUM`, or Debian's.
fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CHROMIUM))
}

// ---- The page's origin: a static file server on port 0 ----

/// Serves the files of `dir` (no subdirectories) on `127.0.0.1:<port>`
/// from a thread, for as long as the test binary runs; returns the port.
fn serve_static(dir: PathBuf) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the page's server");
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let _ = answer_file(stream, &dir);
            });
        }
    });
    port
}

fn answer_file(mut stream: TcpStream, dir: &Path) -> std::io::Result<()> {
    stream.set_read_timeout(Some(WAIT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let target = request_line.split(' ').nth(1).unwrap_or("/");
    let path = target.split(['?', '#']).next().unwrap_or("/");
    let name = match path.trim_start_matches('/') {
        "" => "index.html",
        name => name,
    };
    let file = (!name.contains('/') && !name.contains(".."))
        .then(|| dir.join(name))
        .filter(|file| file.is_file());
    let Some(file) = file else {
        let body = "not found\n";
        return write!(
            stream,
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
    };
    let content_type = match file.extension().and_then(|ext| ext.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        _ => "application/octet-stream",
    };
    let body = std::fs::read(&file)?;
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(&body)?;
    stream.flush()
}

// ---- Headless Chromium over the DevTools protocol ----

/// A headless Chromium with one page attached; killed (and its profile
/// removed) when dropped.
struct Browser {
    child: Child,
    to_browser: ChildStdin,
    from_browser: mpsc::UnboundedReceiver<Value>,
    next_id: u64,
    /// The page's flattened session (`Target.attachToTarget`).
    session: Option<String>,
    profile: PathBuf,
    /// What the page logged and threw, for failure messages.
    console: Vec<String>,
    /// `(method, url, status)` of every answer to the page's `fetch`es.
    fetches: Vec<(String, String, u64)>,
    /// Request id → method, to name the method of each answer.
    requests: Vec<(String, String)>,
}

impl Browser {
    fn launch(binary: &Path, name: &str) -> Browser {
        let profile = std::env::temp_dir().join(format!("{name}-chromium"));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).expect("profile directory");
        let log = std::fs::File::create(profile.join("chromium.log")).expect("log file");
        // std gives the child only fds 0-2: the shell moves the pipes to
        // the fds the protocol uses (3: to the browser, 4: from it) and
        // sends Chromium's own stdout to the log.
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>&2"#)
            .arg(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--remote-debugging-pipe",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--no-proxy-server",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-default-apps",
                "--disable-extensions",
                "--disable-sync",
                "--disable-domain-reliability",
                "--disable-client-side-phishing-detection",
                "--no-pings",
                "--mute-audio",
                "--password-store=basic",
                "--use-mock-keychain",
                "--window-size=1024,768",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start chromium");
        let to_browser = child.stdin.take().unwrap();
        let mut from_chromium = BufReader::new(child.stdout.take().unwrap());
        let (messages, from_browser) = mpsc::unbounded_channel();
        std::thread::spawn(move || loop {
            let mut message = Vec::new();
            match from_chromium.read_until(0, &mut message) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if message.last() == Some(&0) {
                        message.pop();
                    }
                    let Ok(message) = serde_json::from_slice::<Value>(&message) else {
                        continue;
                    };
                    if messages.send(message).is_err() {
                        break;
                    }
                }
            }
        });
        Browser {
            child,
            to_browser,
            from_browser,
            next_id: 1,
            session: None,
            profile,
            console: Vec::new(),
            fetches: Vec::new(),
            requests: Vec::new(),
        }
    }

    /// The tail of Chromium's own log, for failure messages.
    fn chromium_log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(self.profile.join("chromium.log")) {
            let _ = file.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Sends a protocol command (to the page when `page`) and waits for its
    /// result, noting the events that arrive meanwhile.
    async fn command(&mut self, page: bool, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({"id": id, "method": method, "params": params});
        if page {
            let session = self.session.clone().expect("a page is attached");
            message["sessionId"] = Value::String(session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        if let Err(error) = self
            .to_browser
            .write_all(&bytes)
            .and_then(|()| self.to_browser.flush())
        {
            panic!(
                "cannot send {method} to Chromium ({error}); its log:\n{}",
                self.chromium_log()
            );
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let received = tokio::time::timeout_at(deadline, self.from_browser.recv()).await;
            let message = match received {
                Ok(Some(message)) => message,
                Ok(None) => panic!(
                    "Chromium closed the pipe during {method}; its log:\n{}",
                    self.chromium_log()
                ),
                Err(_) => panic!(
                    "no answer from Chromium to {method} within {WAIT:?}; its log:\n{}",
                    self.chromium_log()
                ),
            };
            if message["id"] == id {
                if let Some(error) = message.get("error") {
                    panic!("{method} failed: {error}");
                }
                return message["result"].clone();
            }
            self.note(&message);
        }
    }

    fn note(&mut self, event: &Value) {
        let params = &event["params"];
        match event["method"].as_str() {
            Some("Runtime.consoleAPICalled") => {
                let args: Vec<String> = params["args"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|arg| match &arg["value"] {
                        Value::String(text) => text.clone(),
                        Value::Null => arg["description"].as_str().unwrap_or("").to_owned(),
                        value => value.to_string(),
                    })
                    .collect();
                self.console
                    .push(format!("console.{}: {}", params["type"], args.join(" ")));
            }
            Some("Runtime.exceptionThrown") => {
                let details = &params["exceptionDetails"];
                let description = details["exception"]["description"]
                    .as_str()
                    .or(details["text"].as_str())
                    .unwrap_or("?");
                self.console.push(format!("uncaught: {description}"));
            }
            Some("Network.requestWillBeSent") => {
                self.requests.push((
                    params["requestId"].as_str().unwrap_or("").to_owned(),
                    params["request"]["method"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned(),
                ));
            }
            Some("Network.responseReceived") if params["type"] == "Fetch" => {
                let id = params["requestId"].as_str().unwrap_or("");
                let method = self
                    .requests
                    .iter()
                    .rev()
                    .find(|(request, _)| request == id)
                    .map(|(_, method)| method.clone())
                    .unwrap_or_default();
                self.fetches.push((
                    method,
                    params["response"]["url"].as_str().unwrap_or("").to_owned(),
                    params["response"]["status"].as_u64().unwrap_or(0),
                ));
            }
            Some("Network.loadingFailed") => {
                self.console.push(format!(
                    "request failed: {} {}",
                    params["errorText"], params["corsErrorStatus"]
                ));
            }
            _ => {}
        }
    }

    /// Opens a page target, attaches to it and loads `url`.
    async fn open(&mut self, url: &str) {
        let target = self
            .command(false, "Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let attached = self
            .command(
                false,
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        self.session = Some(
            attached["sessionId"]
                .as_str()
                .expect("a session id")
                .to_owned(),
        );
        for domain in ["Runtime.enable", "Page.enable", "Network.enable"] {
            self.command(true, domain, json!({})).await;
        }
        let navigated = self
            .command(true, "Page.navigate", json!({"url": url}))
            .await;
        assert!(
            navigated.get("errorText").is_none(),
            "navigating to {url}: {navigated}"
        );
    }

    /// The value of a JavaScript expression in the page (promises awaited).
    async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .command(
                true,
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("{expression} threw: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// The text of the element with this id.
    async fn text(&mut self, id: &str) -> String {
        let value = self
            .eval(&format!("document.getElementById({id:?}).textContent"))
            .await;
        value.as_str().unwrap_or_default().to_owned()
    }

    /// What the page shows, for failure messages.
    async fn state(&mut self) -> String {
        let status = self.text("status").await;
        let output = self.text("output").await;
        format!(
            "#status: {status:?}\n#output: {output}\nfetches: {:?}\nconsole: {:#?}",
            self.fetches, self.console
        )
    }

    /// Waits until the expression is `true` in the page.
    async fn wait_for(&mut self, expression: &str, what: &str) {
        let started = Instant::now();
        while self.eval(expression).await != Value::Bool(true) {
            if started.elapsed() > WAIT {
                let state = self.state().await;
                panic!("timed out waiting for {what}\n{state}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `#status` reads `expected`.
    async fn wait_for_status(&mut self, expected: &str) {
        self.wait_for(
            &format!("document.getElementById('status').textContent === {expected:?}"),
            &format!("#status to read {expected:?}"),
        )
        .await;
    }

    /// Waits until the page has had an answer to `method path` beyond the
    /// first `seen` fetches; returns its status and how many fetches were
    /// answered up to it.
    async fn wait_for_fetch(&mut self, seen: usize, method: &str, path: &str) -> (u64, usize) {
        let started = Instant::now();
        loop {
            let found = self.fetches[seen..]
                .iter()
                .position(|(m, url, _)| m == method && url.ends_with(path));
            if let Some(index) = found {
                return (self.fetches[seen + index].2, seen + index + 1);
            }
            if started.elapsed() > WAIT {
                let state = self.state().await;
                panic!("timed out waiting for the page's {method} {path}\n{state}");
            }
            // Any command lets the events that arrived meanwhile in.
            self.eval("0").await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Clicks the middle of the element with this id, as a mouse would.
    async fn click(&mut self, id: &str) {
        let point = self
            .eval(&format!(
                "(() => {{ const element = document.getElementById({id:?}); \
                 element.scrollIntoView({{block: 'center'}}); \
                 const box = element.getBoundingClientRect(); \
                 return {{x: box.left + box.width / 2, y: box.top + box.height / 2}}; }})()"
            ))
            .await;
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.command(
                true,
                "Input.dispatchMouseEvent",
                json!({
                    "type": kind,
                    "x": point["x"],
                    "y": point["y"],
                    "button": "left",
                    "buttons": if kind == "mousePressed" { 1 } else { 0 },
                    "clickCount": 1,
                }),
            )
            .await;
        }
    }

    /// Clicks into the input with this id, empties it and types `text`.
    async fn type_into(&mut self, id: &str, text: &str) {
        self.click(id).await;
        let focused = self
            .eval("document.activeElement && document.activeElement.id")
            .await;
        assert_eq!(focused, id, "clicking #{id} focuses it");
        self.eval("document.activeElement.select()").await;
        self.command(true, "Input.insertText", json!({"text": text}))
            .await;
        let value = self
            .eval(&format!("document.getElementById({id:?}).value"))
            .await;
        assert_eq!(value, text, "#{id} holds what was typed");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Chromium's binary; `None` (the test then skips, saying so) when it is
/// missing outside CI.
fn chromium_or_skip() -> Option<PathBuf> {
    let binary = chromium();
    if binary.is_file() {
        return Some(binary);
    }
    let in_ci = std::env::var("CI").is_ok_and(|ci| ci == "true");
    assert!(
        !in_ci,
        "Chromium ({}) is missing in CI; scripts/test installs it (apt-get install chromium)",
        binary.display()
    );
    eprintln!(
        "\n*** SKIPPED: the example page's browser test needs Chromium at {} \
         ($CHROMIUM, default {DEFAULT_CHROMIUM}): apt-get install chromium, or run \
         `bash scripts/services.sh chromium` ***\n",
        binary.display()
    );
    None
}

/// The example page's origin: `http://localhost:<port>` of a server of its files.
fn serve_example_page() -> String {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cookie-session");
    format!("http://localhost:{}", serve_static(examples))
}

/// A browser showing the example page from `page_origin`, against `app`.
async fn open_example_page(binary: &Path, app: &TestApp, page_origin: &str) -> Browser {
    // localhost, like the page: a secure context, so the Secure __Host-
    // cookies are kept; another port, so the page calls it with CORS.
    let api = app.address.replace("127.0.0.1", "localhost");
    let mut browser = Browser::launch(binary, &app.db.name);
    browser.open(&format!("{page_origin}/?api={api}")).await;
    browser
        .wait_for(
            &format!(
                "document.readyState === 'complete' && \
                 document.getElementById('api').textContent === {api:?}"
            ),
            "the page loaded with the api's address",
        )
        .await;
    assert_eq!(browser.text("status").await, "signed out");
    browser
}

#[tokio::test]
async fn the_example_page_logs_in_with_cookies_shows_the_session_refreshes_and_logs_out() {
    let Some(binary) = chromium_or_skip() else {
        return;
    };
    let page_origin = serve_example_page();
    let app = spawn_app_with(&[&format!("--cors-allowed-origins={page_origin}")]).await;
    let email = "browser@example.com";
    let (user_id, _) = app.register(email, "Browser").await;
    let mut browser = open_example_page(&binary, &app, &page_origin).await;

    // A wrong password: refused, nobody signed in.
    browser.type_into("email", email).await;
    browser
        .type_into("password", "not the password at all")
        .await;
    browser.click("login-button").await;
    browser.wait_for_status("login refused (401)").await;
    assert_eq!(
        browser
            .eval("document.getElementById('password').value")
            .await,
        "",
        "the page empties the password field"
    );

    // The right one: the page shows the session, from GET /v1/auth/session.
    browser.type_into("password", GOOD_PASSWORD).await;
    let seen = browser.fetches.len();
    browser.click("login-button").await;
    browser
        .wait_for_status(&format!("signed in as {email}"))
        .await;
    let (status, seen) = browser.wait_for_fetch(seen, "POST", "/v1/auth/login").await;
    assert_eq!(status, 200, "cookie login");
    assert_eq!(
        browser
            .eval("document.getElementById('login').hidden")
            .await,
        true,
        "the login form is hidden while signed in"
    );
    let (status, _) = browser
        .wait_for_fetch(seen, "GET", "/v1/auth/session")
        .await;
    assert_eq!(status, 200, "the session after login");
    let shown: Value = serde_json::from_str(&browser.text("output").await).expect("JSON shown");
    assert_eq!(shown["user"]["email"], email, "{shown}");
    assert_eq!(shown["user"]["id"], user_id.as_str(), "{shown}");
    let session_id = shown["session_id"].as_str().expect("session_id").to_owned();
    assert!(shown["expires_at"].is_string(), "{shown}");
    assert!(
        !browser.text("output").await.contains("token"),
        "no token reaches the page: {shown}"
    );
    assert_eq!(
        browser.eval("document.cookie").await,
        "",
        "the session cookies are HttpOnly: the page cannot read them"
    );

    // Refresh: new cookies from the refresh cookie, the same session shown.
    let seen = browser.fetches.len();
    browser.click("refresh-button").await;
    let (status, seen) = browser
        .wait_for_fetch(seen, "POST", "/v1/auth/refresh")
        .await;
    assert_eq!(status, 200, "refresh from the cookie");
    let (status, _) = browser
        .wait_for_fetch(seen, "GET", "/v1/auth/session")
        .await;
    assert_eq!(status, 200, "the session after refresh");
    browser
        .wait_for_status(&format!("signed in as {email}"))
        .await;
    let shown: Value = serde_json::from_str(&browser.text("output").await).expect("JSON shown");
    assert_eq!(shown["session_id"], session_id.as_str(), "{shown}");

    // Log out: the session ends, the page shows nobody, and asking again
    // is a 401 (the cookies are gone and the session is over).
    let seen = browser.fetches.len();
    browser.click("logout-button").await;
    browser.wait_for_status("signed out").await;
    let (status, _) = browser
        .wait_for_fetch(seen, "POST", "/v1/auth/logout")
        .await;
    assert_eq!(status, 204, "logout");
    assert_eq!(
        browser
            .eval("document.getElementById('login').hidden")
            .await,
        false,
        "the login form is back once signed out"
    );
    assert_eq!(browser.text("output").await, "");
    let seen = browser.fetches.len();
    browser.click("session-button").await;
    let (status, _) = browser
        .wait_for_fetch(seen, "GET", "/v1/auth/session")
        .await;
    assert_eq!(status, 401, "the session after logout");
    browser.wait_for_status("signed out").await;
    let shown: Value = serde_json::from_str(&browser.text("output").await).expect("JSON shown");
    assert_eq!(shown["status"], 401, "the problem is shown: {shown}");
    let page_text = browser.eval("document.body.innerText").await;
    assert!(
        !page_text.as_str().unwrap_or_default().contains(email),
        "the email is gone from the page: {page_text}"
    );
    assert!(
        browser
            .console
            .iter()
            .all(|line| !line.starts_with("uncaught")),
        "{:#?}",
        browser.console
    );

    // The api agrees: the session the page showed has ended.
    let path = format!("/v1/sessions?user_id={user_id}");
    eventually(WAIT, "the session ended in the read model", || async {
        let sessions: Value = app.get(&path).await.json().await.ok()?;
        let session = sessions["items"]
            .as_array()?
            .iter()
            .find(|session| session["session_id"] == session_id.as_str())?
            .clone();
        (session["status"] != "active").then_some(())
    })
    .await;
}

/// Signs in on the page with the password; a second step is then due.
async fn first_step(browser: &mut Browser, email: &str) {
    browser.type_into("email", email).await;
    browser.type_into("password", GOOD_PASSWORD).await;
    browser.click("login-button").await;
    browser.wait_for_status("second factor required").await;
}

async fn log_out(browser: &mut Browser) {
    browser.click("logout-button").await;
    browser.wait_for_status("signed out").await;
}

/// How the person last proved a second factor, as the api recorded it.
async fn proved_with(app: &TestApp, user_id: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT method FROM second_factor_verifications WHERE user_id = $1::uuid \
         ORDER BY verified_at",
    )
    .bind(user_id)
    .fetch_all(&app.db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn the_example_page_adds_a_passkey_and_signs_in_with_it_or_with_an_apps_code() {
    let Some(binary) = chromium_or_skip() else {
        return;
    };
    let page_origin = serve_example_page();
    let app = spawn_app_with(&[
        &format!("--cors-allowed-origins={page_origin}"),
        "--webauthn-rp-id=localhost",
        &format!("--webauthn-origins={page_origin}"),
    ])
    .await;
    let email = "passkey@example.com";
    let (user_id, _) = app.register(email, "Passkey").await;
    let mut browser = open_example_page(&binary, &app, &page_origin).await;
    // The authenticator the browser talks to: a platform one, with user
    // verification (what passkeys ask for), answering at once.
    browser.command(true, "WebAuthn.enable", json!({})).await;
    browser
        .command(
            true,
            "WebAuthn.addVirtualAuthenticator",
            json!({"options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": true,
                "hasUserVerification": true,
                "isUserVerified": true,
                "automaticPresenceSimulation": true,
            }}),
        )
        .await;

    // Signed in with the password alone, the person adds a passkey: the
    // first factor comes with ten recovery codes.
    browser.type_into("email", email).await;
    browser.type_into("password", GOOD_PASSWORD).await;
    browser.click("login-button").await;
    browser
        .wait_for_status(&format!("signed in as {email}"))
        .await;
    browser.click("add-passkey-button").await;
    browser.wait_for_status("passkey added").await;
    let added: Value = serde_json::from_str(&browser.text("output").await).unwrap();
    let recovery_codes = added["recovery_codes"].as_array().unwrap().clone();
    assert_eq!(recovery_codes.len(), 10, "{added}");
    let listed: Value = app
        .get(&format!("/v1/users/{user_id}/second-factors"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"][0]["kind"], "passkey", "{listed}");
    assert_eq!(listed["items"][0]["name"], "this browser", "{listed}");
    log_out(&mut browser).await;

    // The password now answers a challenge; the passkey completes it.
    first_step(&mut browser, email).await;
    let offered = browser
        .eval("!document.getElementById('passkey-login-button').hidden")
        .await;
    assert_eq!(offered, true, "the page offers the passkey");
    browser.click("passkey-login-button").await;
    browser
        .wait_for_status(&format!("signed in as {email}"))
        .await;
    assert_eq!(proved_with(&app, &user_id).await.last().unwrap(), "passkey");

    // A step-up with the passkey, from the page's session; the same
    // assertion sent again finds its ceremony used up.
    let statuses = browser
        .eval(
            "(async () => { \
               const api = document.getElementById('api').textContent; \
               const post = (path, body) => fetch(api + path, {method: 'POST', \
                 credentials: 'include', headers: {'content-type': 'application/json'}, \
                 body: JSON.stringify(body)}); \
               const begun = await (await post('/v1/auth/step-up/passkey', {})).json(); \
               const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(begun.passkey.publicKey); \
               const passkey = (await navigator.credentials.get({publicKey})).toJSON(); \
               const first = await post('/v1/auth/step-up', {ceremony: begun.ceremony, passkey}); \
               const again = await post('/v1/auth/step-up', {ceremony: begun.ceremony, passkey}); \
               return [first.status, (await first.json()).step_up_valid_for, again.status]; \
             })()",
        )
        .await;
    assert_eq!(statuses, json!([200, 900, 422]));
    log_out(&mut browser).await;

    // An authenticator app beside it, enrolled from a bearer session that
    // proved a recovery code; the page's second step takes its code.
    let first = login(&app.client, &app.address, email, GOOD_PASSWORD).await;
    assert_eq!(
        first["methods"],
        json!(["passkey", "recovery_code"]),
        "{first}"
    );
    let second: Value = app
        .request(reqwest::Method::POST, "/v1/auth/login/second-factor", None)
        .json(&json!({"challenge": first["challenge"], "recovery_code": recovery_codes[0]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = second["access_token"].as_str().unwrap();
    let begun: Value = app
        .send(
            reqwest::Method::POST,
            &format!("/v1/users/{user_id}/second-factors/totp"),
            access,
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let secret = domain::TotpSecret::from_base32(begun["secret"].as_str().unwrap()).unwrap();
    let code = || {
        let step = domain::second_factor::totp::step_at(chrono::Utc::now().timestamp());
        secret.code_at_step(step).to_string()
    };
    let confirmed = app
        .send(
            reqwest::Method::POST,
            &format!(
                "/v1/users/{user_id}/second-factors/{}/confirm",
                begun["factor_id"].as_str().unwrap()
            ),
            access,
            Some(json!({"code": code()})),
        )
        .await;
    assert_eq!(confirmed.status(), 200);
    first_step(&mut browser, email).await;
    // The code just used confirmed the enrolment: the page's must be a
    // later step's (one step of skew is allowed, a replay is not).
    let step = domain::second_factor::totp::step_at(chrono::Utc::now().timestamp());
    browser
        .type_into("code", &secret.code_at_step(step + 1).to_string())
        .await;
    browser.click("code-button").await;
    browser
        .wait_for_status(&format!("signed in as {email}"))
        .await;
    assert_eq!(proved_with(&app, &user_id).await.last().unwrap(), "totp");

    // An administrator holding more removes the passkey; erasure takes
    // the rest, with every ceremony and proof.
    let passkey = listed["items"][0]["factor_id"].as_str().unwrap();
    let removed = app
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/users/{user_id}/second-factors/{passkey}"),
            &app.admin_token,
            None,
        )
        .await;
    assert_eq!(removed.status(), 200);
    assert_eq!(
        crate::support::count_events(&app.db, domain::SecondFactorEvent::PASSKEY_REMOVED.name())
            .await,
        1
    );
    let erased = app.post_empty(&format!("/v1/users/{user_id}/erase")).await;
    assert_eq!(erased.status(), 200);
    for table in [
        "passkeys",
        "webauthn_ceremonies",
        "second_factor_verifications",
        "totp_factors",
    ] {
        let left: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {table} WHERE user_id = $1::uuid"
        ))
        .bind(&user_id)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
        assert_eq!(left, 0, "{table}");
    }
    assert!(
        browser
            .console
            .iter()
            .all(|line| !line.starts_with("uncaught")),
        "{:#?}",
        browser.console
    );
}
