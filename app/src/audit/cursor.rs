//! The list's opaque cursor: where the previous page ended in publishing
//! order, which way the walk goes, and which filters it was issued for.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use infra::event_log::LogPosition;
use sha2::{Digest, Sha256};

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

/// A stream history's opaque cursor: the sequence of the last event of the
/// previous page, for the one stream it was issued for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamCursor {
    pub after_sequence: i64,
    pub fingerprint: u64,
}

const STREAM_VERSION: &str = "s1";

impl StreamCursor {
    /// Identifies the stream in a cursor, so that a cursor of one stream is
    /// refused by another.
    pub fn fingerprint(aggregate_type: &str, aggregate_id: &str) -> u64 {
        let digest = Sha256::new()
            .chain_update(aggregate_type.as_bytes())
            .chain_update([0])
            .chain_update(aggregate_id.as_bytes())
            .finalize();
        u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
    }

    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!(
            "{STREAM_VERSION}:{}:{:016x}",
            self.after_sequence, self.fingerprint
        ))
    }

    /// The cursor `raw` if this service could have issued it for the stream
    /// of `fingerprint`.
    pub fn decode(raw: &str, fingerprint: u64) -> Result<Self, AppError> {
        parse_stream(raw)
            .filter(|cursor| cursor.fingerprint == fingerprint)
            .ok_or(NOT_ISSUED)
    }
}

pub const NOT_ISSUED: AppError = AppError::BadParameter {
    parameter: "cursor",
    message: "was not issued for this query",
};

fn parse_stream(raw: &str) -> Option<StreamCursor> {
    let plain = String::from_utf8(URL_SAFE_NO_PAD.decode(raw).ok()?).ok()?;
    let mut parts = plain.split(':');
    if parts.next()? != STREAM_VERSION {
        return None;
    }
    let after_sequence = parts.next()?.parse::<i64>().ok().filter(|s| *s >= 1)?;
    let fingerprint = u64::from_str_radix(parts.next()?, 16).ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some(StreamCursor {
        after_sequence,
        fingerprint,
    })
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
    fn a_stream_cursor_is_refused_by_another_stream_and_by_the_list() {
        let user = StreamCursor::fingerprint("user", "a");
        let cursor = StreamCursor {
            after_sequence: 100,
            fingerprint: user,
        };
        assert_eq!(
            StreamCursor::decode(&cursor.encode(), user).unwrap(),
            cursor
        );
        let other = StreamCursor::fingerprint("user", "b");
        assert!(StreamCursor::decode(&cursor.encode(), other).is_err());
        assert_ne!(user, StreamCursor::fingerprint("use", "ra"));
        assert!(Cursor::decode(&cursor.encode(), Order::Oldest, user).is_err());
        assert!(StreamCursor::decode(&self::cursor().encode(), 0xfeed).is_err());
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
