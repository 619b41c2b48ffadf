//! The failed-login phase: `concurrency` clients send `2 * n` refused
//! `POST /v1/auth/login`, alternating the two kinds in the order sent, so the
//! load of the machine falls on both alike: a wrong password for a registered
//! user (spread over the users) and an email nobody registered (the same shape
//! as the registered ones). Both send the same wrong password. The API must
//! answer each with the same 401 `invalid-credentials` problem (the same
//! body, byte for byte) in the same time: the unknown email is verified
//! against a decoy argon2id hash, and the wrong password's `user.login_failed`
//! is appended off the response path. Any other answer fails the run.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use reqwest::{header, StatusCode};
use serde_json::json;
use tokio::task::JoinSet;

use crate::load::Registration;

/// The password both kinds send: wrong for every user, as long as the right one.
pub const WRONG_PASSWORD: &str = "incorrect horse battery staple";

/// The problem type's last segment every refused login must carry.
const INVALID_CREDENTIALS: &str = "invalid-credentials";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A registered user's email with a wrong password.
    WrongPassword,
    /// A well-formed email nobody registered.
    UnknownEmail,
}

impl Kind {
    pub fn describe(self) -> &'static str {
        match self {
            Self::WrongPassword => "wrong password",
            Self::UnknownEmail => "unknown email",
        }
    }
}

/// One refused login: sent at `sent`, its 401 (body read) at `answered`.
#[derive(Clone, Debug)]
pub struct FailedLogin {
    pub kind: Kind,
    pub sent: Instant,
    pub answered: Instant,
}

pub struct FailedLogins {
    /// Every attempt, in the order sent.
    pub attempts: Vec<FailedLogin>,
    /// The one body every 401 had.
    pub body: String,
}

impl FailedLogins {
    pub fn of(&self, kind: Kind) -> impl Iterator<Item = &FailedLogin> {
        self.attempts.iter().filter(move |login| login.kind == kind)
    }
}

/// Sends `n` logins of each kind, alternating, with `concurrency` clients.
pub async fn fail_all(
    client: &reqwest::Client,
    base_url: &str,
    registrations: &[Registration],
    run_tag: &str,
    n: u32,
    concurrency: u32,
) -> anyhow::Result<FailedLogins> {
    let total = 2 * n as usize;
    let users = registrations.len();
    let known: Arc<Vec<String>> = Arc::new(registrations.iter().map(|r| r.email.clone()).collect());
    let tag = run_tag.to_string();
    let next = Arc::new(AtomicUsize::new(0));
    // The first body seen, which every other must equal.
    let first: Arc<Mutex<Option<(Kind, String)>>> = Arc::default();
    let mut clients = JoinSet::new();
    for _ in 0..(concurrency as usize).min(total) {
        let (client, url, known, tag, next, first) = (
            client.clone(),
            format!("{base_url}/v1/auth/login"),
            known.clone(),
            tag.clone(),
            next.clone(),
            first.clone(),
        );
        clients.spawn(async move {
            let mut done = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= total {
                    return anyhow::Ok(done);
                }
                let round = index / 2;
                let (kind, email) = if index % 2 == 0 {
                    (Kind::WrongPassword, known[round % users].clone())
                } else {
                    // Numbered past the registered users: the same shape, never registered.
                    let unknown = users + round;
                    (
                        Kind::UnknownEmail,
                        format!("bench-{tag}-{unknown}@example.com"),
                    )
                };
                done.push(refused(&client, &url, kind, &email, &first).await?);
            }
        });
    }
    let mut attempts = Vec::with_capacity(total);
    while let Some(joined) = clients.join_next().await {
        attempts.extend(joined??);
    }
    attempts.sort_by_key(|login: &FailedLogin| login.sent);
    let body = first
        .lock()
        .expect("first body")
        .take()
        .map(|(_, body)| body)
        .unwrap_or_default();
    Ok(FailedLogins { attempts, body })
}

/// One attempt; Err on a transport failure, an answer other than the 401
/// `invalid-credentials` problem, or a body unlike the first one seen.
async fn refused(
    client: &reqwest::Client,
    url: &str,
    kind: Kind,
    email: &str,
    first: &Mutex<Option<(Kind, String)>>,
) -> anyhow::Result<FailedLogin> {
    let body = json!({ "email": email, "password": WRONG_PASSWORD });
    let sent = Instant::now();
    let response = client
        .post(url)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("POST {url} ({}, {email})", kind.describe()))?;
    let status = response.status();
    let header = |name: header::HeaderName| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (content_type, challenge) = (
        header(header::CONTENT_TYPE),
        header(header::WWW_AUTHENTICATE),
    );
    let text = response.text().await?;
    let answered = Instant::now();
    let what = || format!("POST {url} ({}, {email})", kind.describe());
    anyhow::ensure!(
        status == StatusCode::UNAUTHORIZED,
        "{} answered {status}, not 401: {text}",
        what()
    );
    let problem: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: the 401's body is not JSON: {text}", what()))?;
    anyhow::ensure!(
        problem["type"]
            .as_str()
            .is_some_and(|kind| kind.ends_with(&format!("/{INVALID_CREDENTIALS}")))
            && problem["status"] == 401,
        "{}: the 401 is not the {INVALID_CREDENTIALS} problem: {text}",
        what()
    );
    anyhow::ensure!(
        content_type == "application/problem+json" && challenge == "Bearer",
        "{}: the 401 has Content-Type {content_type:?} and WWW-Authenticate {challenge:?}, \
         expected \"application/problem+json\" and \"Bearer\"",
        what()
    );
    let mut first = first.lock().expect("first body");
    if let Some((first_kind, first_body)) = &*first {
        anyhow::ensure!(
            *first_body == text,
            "{}: the 401's body differs from the first {} 401's:\n  {text}\n  {first_body}",
            what(),
            first_kind.describe()
        );
    } else {
        *first = Some((kind, text));
    }
    Ok(FailedLogin {
        kind,
        sent,
        answered,
    })
}
