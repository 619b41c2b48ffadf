//! Every event name and payload path that the database's own code (trigger
//! functions, triggers, indexes) names must be in the domain's event
//! contract: renaming an event or a variant fails here, not in production.

use std::collections::BTreeSet;

use domain::contract::{all_event_types, PAYLOAD_FIELDS_READ_BY_SQL};
use infra::testing::TestDatabase;

/// The definitions of every function, trigger and index in the schema.
const DEFINITIONS: &str = "\
    SELECT pg_get_functiondef(p.oid) FROM pg_proc p \
      JOIN pg_namespace n ON n.oid = p.pronamespace \
     WHERE n.nspname = 'public' AND p.prokind = 'f' \
    UNION ALL SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal \
    UNION ALL SELECT indexdef FROM pg_indexes WHERE schemaname = 'public'";

/// SQL with casts, parentheses and case removed, so written and normalized
/// forms read alike: `event_type = 'a'`, `payload -> 'V' ->> 'f'`.
fn flatten(sql: &str) -> String {
    sql.replace("::text", "")
        .replace(['(', ')', '[', ']'], " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The quoted literals at the start of `text`, separated by commas and the
/// words `in`, `any`, `array`.
fn leading_literals(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text.trim_start();
    loop {
        for word in ["=", "<>", "in ", "any ", "array ", ","] {
            rest = rest
                .strip_prefix(word)
                .or_else(|| rest.strip_prefix(&word.to_uppercase()))
                .unwrap_or(rest)
                .trim_start();
        }
        let Some(quoted) = rest.strip_prefix('\'') else {
            return found;
        };
        let Some((literal, after)) = quoted.split_once('\'') else {
            return found;
        };
        found.push(literal.to_owned());
        rest = after.trim_start();
    }
}

/// Event names compared with `event_type`.
fn event_names(sql: &str) -> Vec<String> {
    sql.match_indices("event_type")
        .flat_map(|(at, key)| leading_literals(&sql[at + key.len()..]))
        .collect()
}

/// `(variant, field)` of every `payload -> 'Variant' ->> 'field'` (or
/// `-> 'field'`, a field read as JSON).
fn payload_paths(sql: &str) -> Vec<(String, String)> {
    sql.match_indices("payload -> ")
        .filter_map(|(at, key)| {
            let rest = &sql[at + key.len()..];
            let variant = leading_literals(rest).into_iter().next()?;
            let after_variant = &rest[variant.len() + 2..];
            let after_variant = after_variant.trim_start();
            let field = after_variant
                .strip_prefix("->> ")
                .or_else(|| after_variant.strip_prefix("-> "))?;
            Some((variant, leading_literals(field).into_iter().next()?))
        })
        .collect()
}

#[test]
fn the_scanner_finds_names_and_paths_in_both_spellings() {
    let written = flatten(
        "IF NEW.event_type = 'thing.created' THEN x := lower(NEW.payload -> 'Created' ->> 'name'); \
         ELSIF NEW.event_type IN ('a.b', 'c.d') THEN \
         y := json_array_elements_text(NEW.payload -> 'Changed' -> 'items');",
    );
    assert_eq!(event_names(&written), ["thing.created", "a.b", "c.d"]);
    assert_eq!(
        payload_paths(&written),
        [
            ("Created".into(), "name".into()),
            ("Changed".into(), "items".into())
        ]
    );
    let normalized = flatten(
        "CREATE INDEX i ON events USING btree (((payload -> 'Started'::text) ->> 'user_id'::text)) \
         WHERE ((event_type = ANY (ARRAY['x.y'::text, 'z.w'::text])))",
    );
    assert_eq!(event_names(&normalized), ["x.y", "z.w"]);
    assert_eq!(
        payload_paths(&normalized),
        [("Started".into(), "user_id".into())]
    );
}

#[tokio::test]
async fn database_code_names_only_events_and_fields_of_the_contract() {
    let db = TestDatabase::create().await;
    let definitions: Vec<String> = sqlx::query_scalar(DEFINITIONS)
        .fetch_all(&db.pool)
        .await
        .expect("read definitions");
    let sql = flatten(&definitions.join("\n"));

    let known: BTreeSet<&str> = all_event_types().map(|t| t.name()).collect();
    let named: BTreeSet<String> = event_names(&sql).into_iter().collect();
    assert!(
        !named.is_empty(),
        "no event names found: the scan is broken"
    );
    for name in &named {
        assert!(
            known.contains(name.as_str()),
            "{name} is not in the event contract"
        );
    }

    let fields: BTreeSet<(String, String)> = PAYLOAD_FIELDS_READ_BY_SQL
        .iter()
        .map(|f| (f.event_type.variant().to_owned(), f.field.to_owned()))
        .collect();
    let paths = payload_paths(&sql);
    assert!(
        !paths.is_empty(),
        "no payload paths found: the scan is broken"
    );
    for path in paths {
        assert!(
            fields.contains(&path),
            "payload path {path:?} is not in the contract"
        );
    }
}
