//! Erasure under concurrency: logins with the right password and a refresh
//! racing `POST /v1/users/{id}/erase` leave nothing of the person anywhere
//! (every table of the database, the export), and the sessions they end say
//! `user_erased`; and an erasure keeps the administrator's own metadata.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use domain::{SessionEvent, UserEvent};
use futures_util::future::join_all;
use infra::testing::eventually;
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{spawn_app, TestApp, GOOD_PASSWORD, SHORT};

/// 50 trials: rounds of people erased in parallel, each racing its own
/// logins and refresh.
const ROUNDS: u8 = 10;
const PEOPLE_PER_ROUND: u8 = 5;

/// A person of one trial: their own client address and agent.
struct Person {
    id: String,
    email: String,
    ip: Ipv4Addr,
    agent: String,
    client: reqwest::Client,
    refresh_token: String,
}

impl Person {
    /// What must not remain of the person once erased.
    fn values(&self) -> [String; 3] {
        [self.email.clone(), self.ip.to_string(), self.agent.clone()]
    }
}

fn client_from(ip: Ipv4Addr, agent: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(ip))
        .user_agent(agent)
        .pool_idle_timeout(Duration::from_secs(3))
        .build()
        .expect("client")
}

async fn login(app: &TestApp, client: &reqwest::Client, email: &str) -> reqwest::Response {
    client
        .post(app.url("/v1/auth/login"))
        .json(&json!({"email": email, "password": GOOD_PASSWORD}))
        .send()
        .await
        .expect("login request")
}

async fn refresh(app: &TestApp, client: &reqwest::Client, token: &str) -> reqwest::Response {
    client
        .post(app.url("/v1/auth/refresh"))
        .json(&json!({"refresh_token": token}))
        .send()
        .await
        .expect("refresh request")
}

/// Registered (by the administrator) and logged in once, from a client of
/// their own: `127.77.<round>.<100 + n>` (no address is a prefix of another)
/// and an agent naming the trial.
async fn a_person(app: &TestApp, round: u8, n: u8) -> Person {
    let email = format!("race-r{round:02}-p{n}@example.com");
    let ip = Ipv4Addr::new(127, 77, round, 100 + n);
    let agent = format!("RaceProbe/{round}.{n} (erasure trial r{round:02}p{n})");
    let (id, _) = app.register(&email, &format!("Racer {round} {n}")).await;
    let client = client_from(ip, &agent);
    let response = login(app, &client, &email).await;
    assert_eq!(response.status(), 200, "first login of {email}");
    let tokens: Value = response.json().await.expect("tokens");
    Person {
        id,
        email,
        ip,
        agent,
        client,
        refresh_token: tokens["refresh_token"].as_str().expect("refresh").into(),
    }
}

/// Delays in 0..=`most` ms, spread over the trials (reproducible).
fn delay(trial: u32, salt: u32, most: u32) -> Duration {
    Duration::from_millis(u64::from((trial * 7 + salt * 11) % (most + 1)))
}

/// Two logins (the first at once, the second half-way to the erase), a
/// refresh every 10 ms with the newest token, and the erase 0–25 ms after
/// the first login. Every answer must be one a client expects, and once the
/// erase has answered a refresh must be refused: what was not, in
/// `Outcomes::problems`.
async fn race(app: &TestApp, person: &Person, trial: u32) -> Outcomes {
    let erase_after = delay(trial, 0, 25);
    let refresh_after = delay(trial, 1, 25);
    let erase_answered = AtomicBool::new(false);
    let logins = [Duration::ZERO, erase_after / 2].map(|after| async move {
        tokio::time::sleep(after).await;
        login(app, &person.client, &person.email).await.status()
    });
    let refreshes = async {
        tokio::time::sleep(refresh_after).await;
        let mut token = person.refresh_token.clone();
        let mut refreshed = 0;
        // Within the auth rate limit's burst (50 per address).
        for _ in 0..40 {
            let answered = erase_answered.load(Ordering::SeqCst);
            let response = refresh(app, &person.client, &token).await;
            match response.status().as_u16() {
                200 if answered => {
                    return (
                        refreshed,
                        Some("a refresh after the erase answered succeeded"),
                    )
                }
                200 => {
                    let tokens: Value = response.json().await.expect("tokens");
                    token = tokens["refresh_token"].as_str().expect("token").into();
                    refreshed += 1;
                }
                401 => return (refreshed, None),
                _ => {
                    return (
                        refreshed,
                        Some("a racing refresh answered neither 200 nor 401"),
                    )
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (refreshed, Some("the refreshes outlived the erase"))
    };
    let erased = async {
        tokio::time::sleep(erase_after).await;
        let path = format!("/v1/users/{}/erase", person.id);
        let status = app
            .send(Method::POST, &path, &app.admin_token, None)
            .await
            .status();
        erase_answered.store(true, Ordering::SeqCst);
        status
    };
    let (logins, (refreshed, refresh_problem), erased) =
        tokio::join!(join_all(logins), refreshes, erased);
    let mut problems: Vec<String> = refresh_problem.into_iter().map(String::from).collect();
    if erased != 200 {
        problems.push(format!("the erase answered {erased}"));
    }
    for status in &logins {
        if *status != 200 && *status != 401 {
            problems.push(format!("a racing login answered {status}"));
        }
    }
    Outcomes {
        logins_in: logins.iter().filter(|status| **status == 200).count(),
        logins_refused: logins.iter().filter(|status| **status == 401).count(),
        refreshed,
        problems: problems
            .into_iter()
            .map(|problem| format!("{}: {problem}", person.email))
            .collect(),
    }
}

/// How the racing requests ended, summed over the trials.
#[derive(Debug, Default)]
struct Outcomes {
    logins_in: usize,
    logins_refused: usize,
    refreshed: usize,
    problems: Vec<String>,
}

/// Waits until the projector has applied every event (each one has its
/// row in `audit_log`, written with the views).
async fn projected(app: &TestApp) {
    eventually(SHORT, "every event projected", || async {
        let (events, logged): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM audit_log)",
        )
        .fetch_one(&app.db.pool)
        .await
        .ok()?;
        (events == logged).then_some(())
    })
    .await;
}

/// Every row of every table and view of the database, as text, by table.
async fn every_row(pool: &sqlx::PgPool) -> Vec<(String, String)> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .expect("tables");
    assert!(tables.len() > 10, "the search sees the schema: {tables:?}");
    let mut rows = Vec::new();
    for table in tables {
        let sql = format!("SELECT t::text FROM \"{table}\" t");
        let texts: Vec<String> = sqlx::query_scalar(&sql)
            .fetch_all(pool)
            .await
            .expect("rows");
        rows.extend(texts.into_iter().map(|text| (table.clone(), text)));
    }
    rows
}

/// `table: value` for every value of `people` found in the database.
async fn remains(pool: &sqlx::PgPool, people: &[Person]) -> Vec<String> {
    let rows = every_row(pool).await;
    let mut found = Vec::new();
    for person in people {
        for value in person.values() {
            let needle = value.to_lowercase();
            for (table, text) in &rows {
                if text.to_lowercase().contains(&needle) {
                    let row: String = text.chars().take(160).collect();
                    found.push(format!("{table} holds {value}: {row}"));
                }
            }
        }
    }
    found
}

/// The `(status, end_reason)` of every session of the person.
async fn sessions_of(app: &TestApp, id: &str) -> Vec<(String, Option<String>)> {
    sqlx::query_as("SELECT status, end_reason FROM sessions_view WHERE user_id = $1::uuid")
        .bind(id)
        .fetch_all(&app.db.pool)
        .await
        .expect("sessions")
}

#[tokio::test]
async fn logins_and_refreshes_racing_an_erasure_leave_nothing_of_the_person() {
    let app = spawn_app().await;
    let started = std::time::Instant::now();
    let mut outcomes = Outcomes::default();
    let mut all_problems = Vec::new();
    for round in 0..ROUNDS {
        let people = join_all((0..PEOPLE_PER_ROUND).map(|n| a_person(&app, round, n))).await;
        let raced = join_all(people.iter().enumerate().map(|(n, person)| {
            let trial = u32::from(round) * u32::from(PEOPLE_PER_ROUND) + n as u32;
            race(&app, person, trial)
        }))
        .await;
        let mut problems = Vec::new();
        for one in raced {
            outcomes.logins_in += one.logins_in;
            outcomes.logins_refused += one.logins_refused;
            outcomes.refreshed += one.refreshed;
            problems.extend(one.problems);
        }

        projected(&app).await;
        problems.extend(remains(&app.db.pool, &people).await);
        let export = app.get("/v1/audit/export").await;
        assert_eq!(export.status(), 200);
        let export = export.text().await.expect("export").to_lowercase();
        for person in &people {
            for value in person.values() {
                if export.contains(&value.to_lowercase()) {
                    problems.push(format!("the export holds {value}"));
                }
            }
            let sessions = sessions_of(&app, &person.id).await;
            assert!(!sessions.is_empty(), "{} logged in", person.email);
            for (status, reason) in sessions {
                if (status.as_str(), reason.as_deref()) != ("revoked", Some("user_erased")) {
                    problems.push(format!(
                        "a session of {} is {status} ({reason:?})",
                        person.email
                    ));
                }
            }
        }
        all_problems.extend(
            problems
                .into_iter()
                .map(|problem| format!("round {round}: {problem}")),
        );
    }
    assert!(
        all_problems.is_empty(),
        "{} problems: {all_problems:#?}",
        all_problems.len()
    );
    let verified: Value = crate::integrity::verified(&app).await;
    assert_eq!(verified["ok"], true, "{verified}");
    // Events of the people that landed after their erasure: the race is
    // real only if some did.
    let after: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events e JOIN events x \
           ON x.aggregate_type = $1 AND x.event_type = $2 \
          AND (e.metadata ->> 'actor_id') = x.aggregate_id \
        WHERE e.global_position > x.global_position",
    )
    .bind(UserEvent::ERASED.aggregate_type())
    .bind(UserEvent::ERASED.name())
    .fetch_one(&app.db.pool)
    .await
    .expect("late events");
    eprintln!(
        "{} erasures raced in {:?}: {outcomes:?}, {after} events the people caused after their erasure",
        u32::from(ROUNDS) * u32::from(PEOPLE_PER_ROUND),
        started.elapsed()
    );
}

const ADMIN_IP: Ipv4Addr = Ipv4Addr::new(127, 66, 0, 1);
const ADMIN_AGENT: &str = "AdminConsole/2.0 (erasure keeps me)";

/// `(event type, request_ip, user_agent, their salts)` of the stream's
/// events whose actor is `actor`.
async fn metadata_by(
    app: &TestApp,
    aggregate_id: &str,
    actor: &str,
) -> Vec<(String, Option<String>, Option<String>, Option<Value>)> {
    sqlx::query_as(
        "SELECT event_type, metadata ->> 'request_ip', metadata ->> 'user_agent', \
                salts -> 'metadata' \
         FROM events WHERE aggregate_id = $1 AND metadata ->> 'actor_id' = $2 \
         ORDER BY sequence",
    )
    .bind(aggregate_id)
    .bind(actor)
    .fetch_all(&app.db.pool)
    .await
    .expect("metadata")
}

#[tokio::test]
async fn an_erasure_keeps_the_administrators_own_address_and_agent() {
    let app = spawn_app().await;
    let admin = client_from(ADMIN_IP, ADMIN_AGENT);
    let registered = admin
        .post(app.url("/v1/users"))
        .bearer_auth(&app.admin_token)
        .json(
            &json!({"email": "kept.apart@example.com", "password": GOOD_PASSWORD,
                      "display_name": "Kept Apart"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);
    let person: Value = registered.json().await.unwrap();
    let person = person["id"].as_str().unwrap().to_owned();
    let own = client_from(Ipv4Addr::new(127, 66, 0, 2), "PersonProbe/1.0");
    let tokens: Value = login(&app, &own, "kept.apart@example.com")
        .await
        .json()
        .await
        .unwrap();
    let session = tokens["session_id"].as_str().unwrap().to_owned();

    let erased = admin
        .post(app.url(&format!("/v1/users/{person}/erase")))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(erased.status(), 200);

    let in_user_stream = metadata_by(&app, &person, &app.admin_id).await;
    let in_session = metadata_by(&app, &session, &app.admin_id).await;
    let types: Vec<&str> = in_user_stream
        .iter()
        .chain(&in_session)
        .map(|(event_type, ..)| event_type.as_str())
        .collect();
    assert_eq!(
        types,
        [
            UserEvent::REGISTERED.name(),
            UserEvent::ERASED.name(),
            SessionEvent::REVOKED.name()
        ]
    );
    for (event_type, ip, agent, salts) in in_user_stream.into_iter().chain(in_session) {
        assert_eq!(ip.as_deref(), Some("127.66.0.1"), "{event_type}");
        assert_eq!(agent.as_deref(), Some(ADMIN_AGENT), "{event_type}");
        let salts = salts.expect("salts");
        assert!(salts["request_ip"].is_string(), "{event_type}: {salts}");
        assert!(salts["user_agent"].is_string(), "{event_type}: {salts}");
    }
    // The person's own request is erased.
    let started = metadata_by(&app, &session, &person).await;
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].1.as_deref(), Some(domain::ERASED));
    assert_eq!(started[0].2.as_deref(), Some(domain::ERASED));
    let verified: Value = crate::integrity::verified(&app).await;
    assert_eq!(verified["ok"], true, "{verified}");
}
