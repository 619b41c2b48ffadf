//! Refresh-token rotation: a client logs in once, then rotates its session's
//! refresh token again and again (`POST /v1/auth/refresh`), each time with
//! the token the last rotation returned: one long chain per session.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;

use crate::load::PASSWORD;

/// Logins tried while the API's hashing queue answers 503.
const LOGIN_ATTEMPTS: u32 = 50;

pub struct Chain {
    pub http: reqwest::Client,
    pub base_url: Arc<str>,
    refresh_token: String,
}

#[derive(Deserialize)]
struct Tokens {
    refresh_token: String,
}

impl Chain {
    /// Logs `email` in (retrying a full hashing queue) for a session of its own.
    pub async fn start(
        http: reqwest::Client,
        base_url: Arc<str>,
        email: &str,
    ) -> anyhow::Result<Self> {
        let url = format!("{base_url}/v1/auth/login");
        for _ in 0..LOGIN_ATTEMPTS {
            let response = http
                .post(&url)
                .json(&json!({ "email": email, "password": PASSWORD }))
                .send()
                .await
                .with_context(|| format!("POST {url} ({email})"))?;
            let status = response.status();
            let text = response.text().await?;
            match status {
                StatusCode::OK => {
                    let tokens: Tokens = serde_json::from_str(&text)
                        .with_context(|| format!("POST {url}: unexpected body {text}"))?;
                    return Ok(Self {
                        http,
                        base_url,
                        refresh_token: tokens.refresh_token,
                    });
                }
                StatusCode::SERVICE_UNAVAILABLE => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                _ => anyhow::bail!("POST {url} ({email}) answered {status}: {text}"),
            }
        }
        anyhow::bail!("POST {url} ({email}): the hashing queue stayed full")
    }

    /// One rotation, timed send -> 200 read.
    pub async fn rotate(mut self) -> anyhow::Result<(Self, Duration)> {
        let url = format!("{}/v1/auth/refresh", self.base_url);
        let started = Instant::now();
        let response = self
            .http
            .post(&url)
            .json(&json!({ "refresh_token": self.refresh_token }))
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = response.status();
        let text = response.text().await?;
        anyhow::ensure!(
            status == StatusCode::OK,
            "POST {url} answered {status}: {text}"
        );
        let tokens: Tokens =
            serde_json::from_str(&text).with_context(|| format!("POST {url}: unexpected body"))?;
        self.refresh_token = tokens.refresh_token;
        Ok((self, started.elapsed()))
    }
}
