//! The list's opaque cursor: where the previous page ended in publishing
//! order, which way the walk goes, and which filters it was issued for.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use infra::event_log::LogPosition;

use crate::AppError;

const VERSION: &str = "1";

/// Which end of the log a list starts from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Order {
    /// Newest first (the default).
    #[default]
    Newest,
    /// Oldest first: the walk to follow a log as it grows.
    Oldest,
}

impl Order {
    pub const NAMES: [&'static str; 2] = ["newest", "oldest"];

    pub fn parse(raw: Option<&str>) -> Result<Self, AppError> {
        match raw {
            None | Some("newest") => Ok(Self::Newest),
            Some("oldest") => Ok(Self::Oldest),
            Some(_) => Err(AppError::BadParameter {
                parameter: "order",
                message: "must be newest or oldest",
            }),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Newest => Self::NAMES[0],
            Self::Oldest => Self::NAMES[1],
        }
    }
}

/// A place to continue from: strictly after `after` in `order`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub order: Order,
    pub after: LogPosition,
    pub fingerprint: u64,
}

impl Cursor {
    pub fn encode(&self) -> String {
        let plain = format!(
            "{VERSION}:{}:{}:{}:{:016x}",
            self.order.as_str(),
            self.after.transaction_id,
            self.after.global_position,
            self.fingerprint
        );
        URL_SAFE_NO_PAD.encode(plain)
    }

    /// The cursor `raw` if this service could have issued it for a query
    /// in `order` with filters of `fingerprint`.
    pub fn decode(raw: &str, order: Order, fingerprint: u64) -> Result<Self, AppError> {
        parse(raw)
            .filter(|cursor| cursor.order == order && cursor.fingerprint == fingerprint)
            .ok_or(AppError::BadParameter {
                parameter: "cursor",
                message: "was not issued for this query",
            })
    }
}

fn parse(raw: &str) -> Option<Cursor> {
    let plain = String::from_utf8(URL_SAFE_NO_PAD.decode(raw).ok()?).ok()?;
    let mut parts = plain.split(':');
    if parts.next()? != VERSION {
        return None;
    }
    let order = match parts.next()? {
        "newest" => Order::Newest,
        "oldest" => Order::Oldest,
        _ => return None,
    };
    let transaction_id = parts.next()?.parse::<i64>().ok().filter(|id| *id >= 0)?;
    let global_position = parts.next()?.parse::<i64>().ok().filter(|p| *p >= 0)?;
    let fingerprint = u64::from_str_radix(parts.next()?, 16).ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some(Cursor {
        order,
        after: LogPosition {
            transaction_id,
            global_position,
        },
        fingerprint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor() -> Cursor {
        Cursor {
            order: Order::Oldest,
            after: LogPosition {
                transaction_id: 812,
                global_position: 77,
            },
            fingerprint: 0xfeed,
        }
    }

    #[test]
    fn a_cursor_decodes_to_what_was_encoded() {
        let decoded = Cursor::decode(&cursor().encode(), Order::Oldest, 0xfeed);
        assert_eq!(decoded.unwrap(), cursor());
    }

    #[test]
    fn a_cursor_of_another_query_or_order_is_refused() {
        let encoded = cursor().encode();
        assert!(Cursor::decode(&encoded, Order::Newest, 0xfeed).is_err());
        assert!(Cursor::decode(&encoded, Order::Oldest, 0xbeef).is_err());
    }

    #[test]
    fn a_cursor_that_was_never_issued_is_refused() {
        let forged = [
            "",
            "not base64!",
            &URL_SAFE_NO_PAD.encode("2:oldest:1:2:00000000000000ff"),
            &URL_SAFE_NO_PAD.encode("1:oldest:-1:2:00000000000000ff"),
            &URL_SAFE_NO_PAD.encode("1:sideways:1:2:00000000000000ff"),
            &URL_SAFE_NO_PAD.encode("1:oldest:1:2:ff:extra"),
        ];
        for raw in forged {
            assert!(
                matches!(
                    Cursor::decode(raw, Order::Oldest, 0xff),
                    Err(AppError::BadParameter {
                        parameter: "cursor",
                        ..
                    })
                ),
                "{raw:?}"
            );
        }
    }
}
