//! Whether an event's visible payload and metadata are what its sealed form
//! commits to: every string leaf hashes, with its salt, to the commitment in
//! the same place, and every other leaf is equal. A leaf whose salt is gone
//! must read as erased (or, in an export, redacted): its commitment stays in
//! the chain, its value cannot be recovered or tested.

use std::fmt::Write;

use domain::{ERASED, REDACTED};
use serde_json::Value;

use super::json::{Json, NULL};
use super::HexDigest;
pub(crate) const COMMITMENT_PREFIX: &str = "sha256:";

/// Where and why the visible form departs from the sealed one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct SealMismatch {
    /// JSON-pointer-like path, e.g. `/payload/Registered/email`.
    pub path: String,
    pub reason: &'static str,
}

/// What a leaf shown without its salt reads as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Marker {
    /// [`ERASED`]: a personal value removed by an erasure.
    Erased,
    /// [`REDACTED`]: a secret an export does not show.
    Redacted,
}

/// A leaf shown as a marker, without its salt: whether it may be is for
/// the caller to decide (the erasure and redaction rules).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Withheld {
    /// JSON-pointer-like path, e.g. `/payload/Registered/email`.
    pub path: String,
    pub marker: Marker,
}

/// Checks `visible` against `sealed` and `salts`, all three of the shape
/// `{"payload": ..., "metadata": ...}`; returns the leaves shown as a
/// marker without their salt.
pub fn check_seal(
    visible: &Json<'_>,
    sealed: &Json<'_>,
    salts: &Json<'_>,
) -> Result<Vec<Withheld>, SealMismatch> {
    let mut withheld = Vec::new();
    check(visible, sealed, salts, &mut String::new(), &mut withheld)?;
    Ok(withheld)
}

fn check(
    visible: &Json<'_>,
    sealed: &Json<'_>,
    salts: &Json<'_>,
    path: &mut String,
    withheld: &mut Vec<Withheld>,
) -> Result<(), SealMismatch> {
    match sealed {
        Json::String(commitment) => {
            if let Some(marker) = check_leaf(visible, commitment, salts, path)? {
                withheld.push(Withheld {
                    path: path.clone(),
                    marker,
                });
            }
            Ok(())
        }
        Json::Object(sealed_fields) => {
            let Json::Object(visible_fields) = visible else {
                return Err(mismatch(path, "is not an object"));
            };
            if visible_fields.len() != sealed_fields.len() {
                return Err(mismatch(path, "has other fields than were sealed"));
            }
            for (key, sealed_field) in sealed_fields {
                let mark = path.len();
                path.push('/');
                path.push_str(key);
                let visible_field = visible
                    .get(key)
                    .ok_or_else(|| mismatch(path, "is missing"))?;
                check(
                    visible_field,
                    sealed_field,
                    salts.get(key).unwrap_or(NULL),
                    path,
                    withheld,
                )?;
                path.truncate(mark);
            }
            Ok(())
        }
        Json::Array(sealed_items) => {
            let Json::Array(visible_items) = visible else {
                return Err(mismatch(path, "is not an array"));
            };
            if visible_items.len() != sealed_items.len() {
                return Err(mismatch(path, "has another length than was sealed"));
            }
            for (index, (visible_item, sealed_item)) in
                visible_items.iter().zip(sealed_items).enumerate()
            {
                let mark = path.len();
                write!(path, "/{index}").expect("a String takes any write");
                check(
                    visible_item,
                    sealed_item,
                    salts.item(index).unwrap_or(NULL),
                    path,
                    withheld,
                )?;
                path.truncate(mark);
            }
            Ok(())
        }
        other if other == visible => Ok(()),
        _ => Err(mismatch(path, "differs from what was sealed")),
    }
}

/// `Some` marker when the leaf is shown as one, without its salt.
fn check_leaf(
    visible: &Json<'_>,
    commitment: &str,
    salt: &Json<'_>,
    path: &str,
) -> Result<Option<Marker>, SealMismatch> {
    let Some(commitment) = commitment.strip_prefix(COMMITMENT_PREFIX) else {
        return Err(mismatch(path, "the sealed form holds no commitment"));
    };
    let Json::String(value) = visible else {
        return Err(mismatch(path, "is not the string that was sealed"));
    };
    match salt {
        Json::String(salt) => {
            if HexDigest::of_parts(&[salt.as_bytes(), value.as_bytes()]) == *commitment {
                Ok(None)
            } else {
                Err(mismatch(path, "does not match its commitment"))
            }
        }
        Json::Null if value == ERASED => Ok(Some(Marker::Erased)),
        Json::Null if value == REDACTED => Ok(Some(Marker::Redacted)),
        Json::Null => Err(mismatch(path, "has no salt but is not erased")),
        _ => Err(mismatch(path, "has a malformed salt")),
    }
}

/// Removes from `salts` the salt of every leaf `visible` shows redacted:
/// what an export does not show, it does not let anyone test either.
pub fn withhold_salts(visible: &Value, salts: &mut Value) {
    match (visible, salts) {
        (Value::String(shown), salt) if shown == REDACTED => *salt = Value::Null,
        (Value::Object(fields), Value::Object(salt_fields)) => {
            for (key, field) in fields {
                if let Some(salt) = salt_fields.get_mut(key) {
                    withhold_salts(field, salt);
                }
            }
        }
        (Value::Array(items), Value::Array(salt_items)) => {
            for (item, salt) in items.iter().zip(salt_items) {
                withhold_salts(item, salt);
            }
        }
        _ => {}
    }
}

fn mismatch(path: &str, reason: &'static str) -> SealMismatch {
    SealMismatch {
        path: if path.is_empty() {
            "/".to_owned()
        } else {
            path.to_owned()
        },
        reason,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::sha256_hex;
    use super::*;

    fn checked(
        visible: &Value,
        sealed: &Value,
        salts: &Value,
    ) -> Result<Vec<Withheld>, SealMismatch> {
        check_seal(
            &Json::from_value(visible),
            &Json::from_value(sealed),
            &Json::from_value(salts),
        )
    }

    const SALT: &str = "0123456789abcdef0123456789abcdef";

    fn commitment(value: &str) -> String {
        format!("sha256:{}", sha256_hex(format!("{SALT}{value}").as_bytes()))
    }

    fn sealed() -> (Value, Value, Value) {
        let visible = json!({"payload": {"Registered": {"email": "ada@example.com", "n": [1, "x"], "k": null}},
                             "metadata": {"request_ip": "192.0.2.1"}});
        let sealed = json!({"payload": {"Registered": {"email": commitment("ada@example.com"),
                                                       "n": [1, commitment("x")], "k": null}},
                            "metadata": {"request_ip": commitment("192.0.2.1")}});
        let salts = json!({"payload": {"Registered": {"email": SALT, "n": [null, SALT], "k": null}},
                           "metadata": {"request_ip": SALT}});
        (visible, sealed, salts)
    }

    #[test]
    fn what_was_sealed_checks() {
        let (visible, sealed, salts) = sealed();
        assert_eq!(checked(&visible, &sealed, &salts), Ok(Vec::new()));
    }

    #[test]
    fn an_erased_leaf_without_its_salt_is_returned_for_the_rules() {
        let (mut visible, sealed, mut salts) = sealed();
        visible["payload"]["Registered"]["email"] = json!(ERASED);
        salts["payload"]["Registered"]["email"] = Value::Null;
        assert_eq!(
            checked(&visible, &sealed, &salts),
            Ok(vec![Withheld {
                path: "/payload/Registered/email".to_owned(),
                marker: Marker::Erased
            }])
        );
    }

    #[test]
    fn a_redacted_leaf_checks_once_its_salt_is_withheld() {
        let (mut visible, sealed, mut salts) = sealed();
        visible["payload"]["Registered"]["email"] = json!(REDACTED);
        withhold_salts(&visible, &mut salts);
        assert_eq!(salts["payload"]["Registered"]["email"], Value::Null);
        assert_eq!(salts["metadata"]["request_ip"], json!(SALT));
        assert_eq!(
            checked(&visible, &sealed, &salts),
            Ok(vec![Withheld {
                path: "/payload/Registered/email".to_owned(),
                marker: Marker::Redacted
            }])
        );
    }

    #[test]
    fn each_alteration_is_found_where_it_was_made() {
        type Alter = fn(&mut Value, &mut Value);
        let cases: [(&str, Alter); 7] = [
            ("/payload/Registered/email", |v, _| {
                v["payload"]["Registered"]["email"] = json!("eve@example.com")
            }),
            ("/metadata/request_ip", |v, _| {
                v["metadata"]["request_ip"] = json!("198.51.100.9")
            }),
            ("/payload/Registered/n/0", |v, _| {
                v["payload"]["Registered"]["n"][0] = json!(2)
            }),
            ("/payload/Registered/email", |v, s| {
                v["payload"]["Registered"]["email"] = json!("eve@example.com");
                s["payload"]["Registered"]["email"] = Value::Null;
            }),
            ("/payload/Registered", |v, _| {
                v["payload"]["Registered"]["extra"] = json!(true)
            }),
            ("/payload/Registered/n", |v, _| {
                v["payload"]["Registered"]["n"] = json!([1])
            }),
            ("/payload/Registered/email", |_, s| {
                s["payload"]["Registered"]["email"] = json!("ffffffffffffffffffffffffffffffff")
            }),
        ];
        for (path, alter) in cases {
            let (mut visible, sealed, mut salts) = sealed();
            alter(&mut visible, &mut salts);
            let found = checked(&visible, &sealed, &salts).expect_err(path);
            assert_eq!(found.path, path, "{found}");
        }
    }
}
