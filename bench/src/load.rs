//! The clients: `concurrency` tasks, each with one request in flight, register
//! the users (unique emails); at the end every user reads themself back once,
//! with the access token of their own login.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use serde::Deserialize;
use serde_json::json;
use tokio::task::JoinSet;
use uuid::Uuid;

pub const PASSWORD: &str = "correct horse battery staple";

/// One registration: sent at `sent`, its 201 (body read) at `created`.
#[derive(Clone, Debug)]
pub struct Registration {
    pub id: Uuid,
    pub email: String,
    pub position: i64,
    pub sent: Instant,
    pub created: Instant,
}

#[derive(Deserialize)]
struct Accepted {
    id: Uuid,
    position: i64,
}

/// Registers `users` users; fails on the first response that is not a 201.
pub async fn register_all(
    client: &reqwest::Client,
    base_url: &str,
    run_tag: &str,
    users: u32,
    concurrency: u32,
) -> anyhow::Result<Vec<Registration>> {
    let next = Arc::new(AtomicU32::new(0));
    let mut clients = JoinSet::new();
    for _ in 0..concurrency.min(users) {
        let (client, url, tag, next) = (
            client.clone(),
            format!("{base_url}/v1/users"),
            run_tag.to_string(),
            next.clone(),
        );
        clients.spawn(async move {
            let mut done = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= users {
                    return anyhow::Ok(done);
                }
                done.push(register(&client, &url, &tag, index).await?);
            }
        });
    }
    let mut registrations = Vec::with_capacity(users as usize);
    while let Some(joined) = clients.join_next().await {
        registrations.extend(joined??);
    }
    registrations.sort_by_key(|registration| registration.sent);
    Ok(registrations)
}

async fn register(
    client: &reqwest::Client,
    url: &str,
    run_tag: &str,
    index: u32,
) -> anyhow::Result<Registration> {
    let email = format!("bench-{run_tag}-{index}@example.com");
    let body = json!({
        "email": email,
        "password": PASSWORD,
        "display_name": format!("Bench user {index}"),
    });
    let sent = Instant::now();
    let response = client
        .post(url)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("POST {url} (user {index})"))?;
    let status = response.status();
    let text = response.text().await?;
    let created = Instant::now();
    anyhow::ensure!(
        status == reqwest::StatusCode::CREATED,
        "POST {url} (user {index}) answered {status}: {text}"
    );
    let accepted: Accepted = serde_json::from_str(&text)
        .with_context(|| format!("POST {url} (user {index}): unexpected body {text}"))?;
    Ok(Registration {
        id: accepted.id,
        email,
        position: accepted.position,
        sent,
        created,
    })
}

/// Every user reads themself back with `?min_position=` (not timed),
/// authenticated by `tokens[i]`, the access token of registration `i`'s own
/// login: the token is accepted, the read model has the user and the API
/// reports a projection position at or past the registration's.
pub async fn verify_all(
    client: &reqwest::Client,
    base_url: &str,
    registrations: &[Registration],
    tokens: &[Option<String>],
    concurrency: u32,
) -> anyhow::Result<()> {
    let work = registrations
        .iter()
        .zip(tokens)
        .map(|(registration, token)| {
            let token = token
                .clone()
                .with_context(|| format!("{} has no access token", registration.email))?;
            anyhow::Ok((registration.clone(), token))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let queue = Arc::new(std::sync::Mutex::new(work));
    let mut clients = JoinSet::new();
    for _ in 0..concurrency {
        let (client, base_url, queue) = (client.clone(), base_url.to_string(), queue.clone());
        clients.spawn(async move {
            loop {
                let Some((registration, token)) = queue.lock().expect("verify queue").pop() else {
                    return anyhow::Ok(());
                };
                verify(&client, &base_url, &registration, &token).await?;
            }
        });
    }
    while let Some(joined) = clients.join_next().await {
        joined??;
    }
    Ok(())
}

async fn verify(
    client: &reqwest::Client,
    base_url: &str,
    registration: &Registration,
    token: &str,
) -> anyhow::Result<()> {
    let url = format!(
        "{base_url}/v1/users/{}?min_position={}",
        registration.id, registration.position
    );
    let response = client.get(&url).bearer_auth(token).send().await?;
    let status = response.status();
    let projected = response
        .headers()
        .get("Projection-Position")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i64>().ok());
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    anyhow::ensure!(
        status == reqwest::StatusCode::OK,
        "GET {url} answered {status}: {body}"
    );
    anyhow::ensure!(
        body["id"] == registration.id.to_string(),
        "GET {url} returned another user: {body}"
    );
    anyhow::ensure!(
        projected.is_some_and(|projected| projected >= registration.position),
        "GET {url}: Projection-Position {projected:?} is behind {}",
        registration.position
    );
    Ok(())
}
