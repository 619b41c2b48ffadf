//! The api binary's `/metrics`: right after start every metric it registers
//! is there at zero, described and named with a unit; a client cannot add
//! label values with a made-up method or a random path; the relay's gauges
//! appear once it has published.

use api::http_metrics::{self, METHODS, OTHER_METHOD, REQUEST_DURATION, UNMATCHED_ROUTE};
use infra::testing::{
    assert_fresh_metrics, eventually, http_request, scrape, TestDatabase, TestTopology, TIMEOUT,
};
use serde_json::json;
use uuid::Uuid;

use crate::support::{projector_group, start_api, ApiProcess, GOOD_PASSWORD};

fn port_of(api: &ApiProcess) -> u16 {
    api.address.rsplit(':').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn every_metric_exists_at_zero_with_help_and_a_unit_from_the_start() {
    let db = TestDatabase::create().await;
    let topology = TestTopology::new(vec![projector_group()]);
    let api = start_api(&db, &topology).await;

    let names = [
        app::metrics::NAMES,
        relay::metrics::NAMES,
        http_metrics::NAMES,
        &[infra::command_metrics::COMMANDS],
    ]
    .concat();
    assert_fresh_metrics(port_of(&api), &names, None).await;
}

#[tokio::test]
async fn made_up_methods_and_random_paths_add_no_label_values() {
    let db = TestDatabase::create().await;
    let topology = TestTopology::new(vec![projector_group()]);
    let api = start_api(&db, &topology).await;
    let port = port_of(&api);
    let random = Uuid::new_v4().simple().to_string();

    let made_up = http_request(port, "FOO", "/v1/users").await;
    let lost = http_request(port, "GET", &format!("/{random}")).await;
    let deep = http_request(port, &format!("X{random}"), &format!("/v1/{random}/x")).await;
    assert!(made_up.status >= 400 && lost.status == 404 && deep.status >= 400);

    let page = scrape(port).await;
    page.assert_conventions();
    let methods = page.label_values(REQUEST_DURATION, "method");
    let allowed: Vec<&str> = METHODS.iter().map(|m| m.as_str()).collect();
    assert!(methods.contains(OTHER_METHOD), "{methods:?}");
    for method in &methods {
        assert!(
            method == OTHER_METHOD || allowed.contains(&method.as_str()),
            "method label {method}"
        );
    }
    let routes = page.label_values(REQUEST_DURATION, "route");
    assert!(routes.contains(UNMATCHED_ROUTE), "{routes:?}");
    assert!(routes.contains("/v1/users"), "{routes:?}");
    for route in &routes {
        assert!(!route.contains(&random), "route label {route}");
    }
    let statuses = page.label_values(REQUEST_DURATION, "status");
    assert!(
        statuses.iter().all(|s| s.parse::<u16>().is_ok()),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn the_relay_gauges_appear_once_it_has_published() {
    let db = TestDatabase::create().await;
    let topology = TestTopology::new(vec![projector_group()]);
    let api = start_api(&db, &topology).await;
    let port = port_of(&api);
    let registered = reqwest::Client::new()
        .post(format!("{}/v1/users", api.address))
        .json(&json!({"email": "g@example.com", "password": GOOD_PASSWORD, "display_name": "G"}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);

    let page = eventually(TIMEOUT, "the relay's gauges", || async {
        let page = scrape(port).await;
        let published = page.families[relay::metrics::EVENTS_PUBLISHED].samples[0].value;
        let observed = relay::metrics::OBSERVED
            .iter()
            .all(|name| page.families.contains_key(*name));
        (observed && published >= 1.0).then_some(page)
    })
    .await;
    page.assert_conventions();
    let position = &page.families[relay::metrics::CHECKPOINT_POSITION].samples[0];
    assert!(position.value >= 1.0, "{position:?}");
}
