//! Every metric the `ops/` alert rules and Grafana dashboard name is one
//! the services really export: read from the live `/metrics` of the api
//! binary (which runs the relay), the projector and the worker, after a
//! registration has gone through all of them. A name no process exports
//! fails the test; only `up`, which Prometheus makes itself, is allowed.

use std::collections::BTreeSet;

use infra::testing::{
    alert_expressions, dashboard_expressions, metric_names, scrape, MetricsPage, TestDatabase,
    TestTopology, TIMEOUT,
};
use serde_json::json;

use crate::support::{
    api_settings, projector_group, start_api, worker_group, worker_settings, GOOD_PASSWORD,
};

/// Series Prometheus records about its targets, not exported by them.
const PROMETHEUS_OWN: &[&str] = &["up"];

/// Family names and sample names (`_bucket`, `_count`, `_sum`) of a page.
fn exported(page: &MetricsPage) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = page.families.keys().cloned().collect();
    for family in page.families.values() {
        names.extend(family.samples.iter().map(|sample| sample.name.clone()));
    }
    names
}

async fn start_projector(common: &infra::settings::CommonSettings) -> u16 {
    let settings = projector::settings::ProjectorSettings {
        common: common.clone(),
        projector_addr: "127.0.0.1:0".into(),
        delivery_limit: 10,
        prefetch: 256,
        max_batch: 128,
        retry_base_ms: 20,
    };
    let projector = projector::startup::Application::build(settings)
        .await
        .expect("build projector");
    let port = projector.port();
    tokio::spawn(projector.run_until_stopped());
    port
}

async fn start_worker(common: &infra::settings::CommonSettings) -> u16 {
    let worker = worker::startup::Application::build(worker_settings(common, &[]))
        .await
        .expect("build worker");
    let port = worker.port();
    tokio::spawn(worker.run_until_stopped());
    port
}

#[tokio::test]
async fn every_metric_of_the_alert_rules_and_the_dashboard_is_exported() {
    let db = TestDatabase::create().await;
    let webhooks = worker::settings::webhook_consumer_group(10);
    let topology = TestTopology::new(vec![projector_group(), worker_group(), webhooks]);
    let common = api_settings(&db, &topology, &[]).common;
    let projector = start_projector(&common).await;
    let worker = start_worker(&common).await;
    let api = start_api(&db, &topology).await;
    let api_port: u16 = api.address.rsplit(':').next().unwrap().parse().unwrap();
    let registered = reqwest::Client::new()
        .post(format!("{}/v1/users", api.address))
        .json(&json!({"email": "ops@example.com", "password": GOOD_PASSWORD, "display_name": "O"}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);

    let referenced: BTreeSet<String> = alert_expressions()
        .iter()
        .chain(&dashboard_expressions())
        .flat_map(|expr| metric_names(expr))
        .filter(|name| !PROMETHEUS_OWN.contains(&name.as_str()))
        .collect();
    assert!(referenced.len() >= 20, "{referenced:?}");

    // The gauges come with their first sample or publish: look until all
    // are there, then name what is still missing.
    let started = std::time::Instant::now();
    let missing = loop {
        let mut exported_names = BTreeSet::new();
        for port in [api_port, projector, worker] {
            let page = scrape(port).await;
            page.assert_conventions();
            exported_names.extend(exported(&page));
        }
        let missing: Vec<String> = referenced.difference(&exported_names).cloned().collect();
        if missing.is_empty() || started.elapsed() > TIMEOUT {
            break missing;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(
        missing.is_empty(),
        "named in ops/ but exported by no process: {missing:?}"
    );
}
