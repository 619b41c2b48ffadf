//! The login phase: `concurrency` clients, each with one `POST /v1/auth/login`
//! in flight, log every registered user in `logins_per_user` times (round by
//! round, so one user's logins are spread over the phase). Each login verifies
//! exactly one argon2id hash in the API. A 429 (rate limited) or 503 (hashing
//! queue full) is recorded and not retried; any other answer but 200 fails the
//! run. The access token of each user's last 200 authenticates that user's own
//! read-back afterwards.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;
use tokio::task::JoinSet;

use crate::load::{Registration, PASSWORD};

/// Times a user without a token (all their timed logins refused) is tried
/// again, untimed, before the read-back.
const CATCH_UP_ATTEMPTS: u32 = 30;

/// One login attempt of registration `user`: sent at `sent`, its answer (body
/// read) at `answered`.
#[derive(Clone, Debug)]
pub struct Login {
    pub user: usize,
    pub sent: Instant,
    pub answered: Instant,
    pub status: StatusCode,
}

impl Login {
    pub fn ok(&self) -> bool {
        self.status == StatusCode::OK
    }
}

pub struct Logins {
    /// Every attempt, in the order sent.
    pub attempts: Vec<Login>,
    /// The access token of each registration's last 200, in registration order.
    pub tokens: Vec<Option<String>>,
}

#[derive(Deserialize)]
struct TokenPair {
    access_token: String,
    token_type: String,
    expires_in: i64,
    refresh_token: String,
    session_id: uuid::Uuid,
}

impl Logins {
    pub fn succeeded(&self) -> usize {
        self.attempts.iter().filter(|login| login.ok()).count()
    }

    /// The first send -> the last answer.
    pub fn span(&self) -> Option<Duration> {
        let first = self.attempts.iter().map(|login| login.sent).min()?;
        let last = self.attempts.iter().map(|login| login.answered).max()?;
        Some(last - first)
    }

    /// 200s per second over [`Self::span`].
    pub fn per_second(&self) -> Option<f64> {
        Some(self.succeeded() as f64 / self.span()?.as_secs_f64())
    }
}

/// Logs every registration's user in `logins_per_user` times.
pub async fn login_all(
    client: &reqwest::Client,
    base_url: &str,
    registrations: &[Registration],
    logins_per_user: u32,
    concurrency: u32,
) -> anyhow::Result<Logins> {
    let users = registrations.len();
    let total = users * logins_per_user as usize;
    let emails: Arc<Vec<String>> =
        Arc::new(registrations.iter().map(|r| r.email.clone()).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let mut clients = JoinSet::new();
    for _ in 0..(concurrency as usize).min(total) {
        let (client, url, emails, next) = (
            client.clone(),
            format!("{base_url}/v1/auth/login"),
            emails.clone(),
            next.clone(),
        );
        clients.spawn(async move {
            let mut done = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= total {
                    return anyhow::Ok(done);
                }
                let user = index % emails.len();
                done.push(login(&client, &url, user, &emails[user]).await?);
            }
        });
    }
    let mut answered = Vec::with_capacity(total);
    while let Some(joined) = clients.join_next().await {
        answered.extend(joined??);
    }
    answered.sort_by_key(|(login, _): &(Login, Option<String>)| login.sent);
    let mut tokens = vec![None; users];
    let mut attempts = Vec::with_capacity(answered.len());
    for (login, token) in answered {
        if let Some(token) = token {
            tokens[login.user] = Some(token);
        }
        attempts.push(login);
    }
    Ok(Logins { attempts, tokens })
}

/// One attempt: the login and, on a 200, its access token; Err on a transport
/// failure or an answer other than 200, 429 or 503.
async fn login(
    client: &reqwest::Client,
    url: &str,
    user: usize,
    email: &str,
) -> anyhow::Result<(Login, Option<String>)> {
    let body = json!({ "email": email, "password": PASSWORD });
    let sent = Instant::now();
    let response = client
        .post(url)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("POST {url} ({email})"))?;
    let status = response.status();
    let text = response.text().await?;
    let answered = Instant::now();
    let login = Login {
        user,
        sent,
        answered,
        status,
    };
    match status {
        StatusCode::OK => {
            let pair: TokenPair = serde_json::from_str(&text)
                .with_context(|| format!("POST {url} ({email}): unexpected body {text}"))?;
            anyhow::ensure!(
                pair.token_type == "Bearer"
                    && pair.expires_in > 0
                    && !pair.refresh_token.is_empty()
                    && !pair.session_id.is_nil(),
                "POST {url} ({email}): unexpected token pair {text}"
            );
            Ok((login, Some(pair.access_token)))
        }
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => Ok((login, None)),
        _ => anyhow::bail!("POST {url} ({email}) answered {status}: {text}"),
    }
}

/// Logs in (untimed, one at a time, waiting a second after each refusal)
/// every user whose timed logins were all refused, so that every user can
/// read themself back. Returns how many needed it.
pub async fn catch_up(
    client: &reqwest::Client,
    base_url: &str,
    registrations: &[Registration],
    tokens: &mut [Option<String>],
) -> anyhow::Result<usize> {
    let url = format!("{base_url}/v1/auth/login");
    let mut caught_up = 0;
    for (user, (registration, token)) in registrations.iter().zip(tokens.iter_mut()).enumerate() {
        if token.is_some() {
            continue;
        }
        caught_up += 1;
        for attempt in 1..=CATCH_UP_ATTEMPTS {
            let (_, got) = login(client, &url, user, &registration.email).await?;
            if got.is_some() {
                *token = got;
                break;
            }
            anyhow::ensure!(
                attempt < CATCH_UP_ATTEMPTS,
                "{}: every login was refused ({CATCH_UP_ATTEMPTS} tries)",
                registration.email
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    Ok(caught_up)
}
