//! Two `api` processes on one database: of 20 concurrent registrations of
//! one email, exactly one wins.

use crate::support::{projector_group, start_api, GOOD_PASSWORD};
use infra::testing::{TestDatabase, TestTopology};
use serde_json::json;

#[tokio::test]
async fn twenty_concurrent_registrations_of_one_email_across_two_processes() {
    let db = TestDatabase::create().await;
    let topology = TestTopology::new(vec![projector_group()]);
    let processes = [
        start_api(&db, &topology).await,
        start_api(&db, &topology).await,
    ];
    let client = reqwest::Client::new();

    let attempts = (0..20).map(|n| {
        let url = format!("{}/v1/users", processes[n % 2].address);
        // The same address, spelled differently: uniqueness ignores case.
        let email = if n % 3 == 0 { "Race@Example.com" } else { "race@example.com" };
        let body = json!({"email": email, "password": GOOD_PASSWORD, "display_name": format!("Racer {n}")});
        let client = client.clone();
        async move { client.post(url).json(&body).send().await.expect("request") }
    });
    let statuses: Vec<u16> = futures_util::future::join_all(attempts)
        .await
        .iter()
        .map(|response| response.status().as_u16())
        .collect();

    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        19,
        "{statuses:?}"
    );
    let registered: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM events WHERE event_type = '{}'",
        domain::UserEvent::REGISTERED.name()
    ))
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(registered, 1);
    let claims: i64 = sqlx::query_scalar("SELECT count(*) FROM unique_claims WHERE confirmed")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(claims, 1);
}
