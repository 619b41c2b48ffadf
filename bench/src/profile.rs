//! The cheap command (`PATCH /v1/users/{id}` with a new display name) and
//! the read of its own write (`GET /v1/users/{id}?min_position=`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

/// A client acting as one user: its own connection, its own access token.
pub struct Actor {
    pub http: reqwest::Client,
    pub base_url: Arc<str>,
    pub user_id: Uuid,
    pub token: String,
    /// Renames sent so far: each sends a name not sent before.
    pub renames: u64,
}

#[derive(Deserialize)]
struct Accepted {
    position: i64,
}

/// Renames `user_id` (as whoever `token` is) and returns the command's position.
pub async fn rename(
    http: &reqwest::Client,
    base_url: &str,
    token: &str,
    user_id: Uuid,
    name: &str,
) -> anyhow::Result<i64> {
    let url = format!("{base_url}/v1/users/{user_id}");
    let response = http
        .patch(&url)
        .bearer_auth(token)
        .json(&json!({ "display_name": name }))
        .send()
        .await
        .with_context(|| format!("PATCH {url}"))?;
    let status = response.status();
    let text = response.text().await?;
    anyhow::ensure!(
        status == StatusCode::OK,
        "PATCH {url} answered {status}: {text}"
    );
    let accepted: Accepted = serde_json::from_str(&text)
        .with_context(|| format!("PATCH {url}: unexpected body {text}"))?;
    Ok(accepted.position)
}

/// Reads `user_id` back once the read model has `position`; Err unless 200
/// with a `Projection-Position` at or past it.
pub async fn read_at_least(
    http: &reqwest::Client,
    base_url: &str,
    token: &str,
    user_id: Uuid,
    position: i64,
) -> anyhow::Result<()> {
    let url = format!("{base_url}/v1/users/{user_id}?min_position={position}");
    let response = http
        .get(&url)
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let projected = response
        .headers()
        .get("Projection-Position")
        .and_then(|value| value.to_str().ok()?.parse::<i64>().ok());
    let text = response.text().await?;
    anyhow::ensure!(
        status == StatusCode::OK,
        "GET {url} answered {status}: {text}"
    );
    anyhow::ensure!(
        projected.is_some_and(|projected| projected >= position),
        "GET {url}: Projection-Position {projected:?} is behind {position}"
    );
    Ok(())
}

impl Actor {
    fn next_name(&mut self) -> String {
        self.renames += 1;
        format!("Bench {}", self.renames)
    }

    /// One rename of the actor's own user: the step of the command phase,
    /// timed send -> 200 read.
    pub async fn rename_self(mut self) -> anyhow::Result<(Self, Duration)> {
        let name = self.next_name();
        let started = Instant::now();
        rename(&self.http, &self.base_url, &self.token, self.user_id, &name).await?;
        Ok((self, started.elapsed()))
    }

    /// A rename, then the read of it: the step of the write -> read phases,
    /// timed from the rename's 200 to the read's 200.
    pub async fn write_then_read(mut self) -> anyhow::Result<(Self, Duration)> {
        let name = self.next_name();
        let position = rename(&self.http, &self.base_url, &self.token, self.user_id, &name).await?;
        let written = Instant::now();
        read_at_least(
            &self.http,
            &self.base_url,
            &self.token,
            self.user_id,
            position,
        )
        .await?;
        Ok((self, written.elapsed()))
    }

    /// `GET /v1/users/me`, timed send -> 200 read.
    pub async fn read_me(self) -> anyhow::Result<(Self, Duration)> {
        let url = format!("{}/v1/users/me", self.base_url);
        self.read(url).await
    }

    /// `GET /v1/users/{id}` of the actor's user, with the actor's
    /// credential (its own access token, or an API key allowed to read it).
    pub async fn read_user(self) -> anyhow::Result<(Self, Duration)> {
        let url = format!("{}/v1/users/{}", self.base_url, self.user_id);
        self.read(url).await
    }

    async fn read(self, url: String) -> anyhow::Result<(Self, Duration)> {
        let started = Instant::now();
        let response = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = response.status();
        let text = response.text().await?;
        anyhow::ensure!(
            status == StatusCode::OK,
            "GET {url} answered {status}: {text}"
        );
        Ok((self, started.elapsed()))
    }
}
