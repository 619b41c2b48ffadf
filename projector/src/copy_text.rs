//! Rows written with `COPY ... FROM STDIN` in PostgreSQL's text format: a
//! rebuild's bulk writes, one statement per table instead of one per row.

use std::io::Write;

use sqlx::PgConnection;

use crate::views::{Column, Value};

/// Bytes sent to the server per message of a `COPY`.
const CHUNK: usize = 1 << 20;

/// Writes `rows` into `table` (the columns `columns` gives, in its order)
/// with one `COPY`; returns the rows written.
pub async fn copy_rows<'a, T: 'a>(
    db: &mut PgConnection,
    table: &str,
    rows: impl IntoIterator<Item = &'a T>,
    columns: impl Fn(&'a T) -> Vec<Column<'a>>,
) -> sqlx::Result<u64> {
    let mut rows = rows.into_iter().map(columns).peekable();
    let Some(first) = rows.peek() else {
        return Ok(0);
    };
    let names: Vec<&str> = first.iter().map(|column| column.name).collect();
    let statement = format!("COPY {table} ({}) FROM STDIN", names.join(", "));
    let mut copy = db.copy_in_raw(&statement).await?;
    // One buffer, reused: growing a fresh one per message costs more than
    // encoding the rows.
    let mut text = CopyText {
        bytes: Vec::with_capacity(CHUNK + CHUNK / 4),
    };
    for row in rows {
        text.row(&row);
        if text.bytes.len() >= CHUNK {
            copy.send(text.bytes.as_slice()).await?;
            text.bytes.clear();
        }
    }
    if !text.bytes.is_empty() {
        copy.send(text.bytes.as_slice()).await?;
    }
    copy.finish().await
}

/// Rows in `COPY`'s text format: tab-separated values, a line per row,
/// `\N` for null, backslash escapes for what would end a value or a line.
/// Values are written straight into the buffer, without a string each.
#[derive(Debug, Default)]
pub struct CopyText {
    pub bytes: Vec<u8>,
}

impl CopyText {
    pub fn row(&mut self, columns: &[Column<'_>]) {
        for (index, column) in columns.iter().enumerate() {
            if index > 0 {
                self.bytes.push(b'\t');
            }
            self.value(&column.value);
        }
        self.bytes.push(b'\n');
    }

    fn value(&mut self, value: &Value<'_>) {
        match value {
            Value::Uuid(uuid) => {
                let mut buffer = uuid::Uuid::encode_buffer();
                let hyphenated = uuid.hyphenated().encode_lower(&mut buffer);
                self.bytes.extend_from_slice(hyphenated.as_bytes());
            }
            Value::Text(text) | Value::OptionalText(Some(text)) => self.text(text),
            Value::BigInt(number) => self.display(number),
            Value::Time(time) | Value::OptionalTime(Some(time)) => {
                self.display(&time.format(TIMESTAMP));
            }
            Value::OptionalText(None) | Value::OptionalTime(None) => {
                self.bytes.extend_from_slice(NULL);
            }
            Value::TextArray(items) => self.text(&array_literal(items)),
        }
    }

    fn display(&mut self, value: &impl std::fmt::Display) {
        // Writing into a Vec cannot fail.
        let _ = write!(self.bytes, "{value}");
    }

    fn text(&mut self, text: &str) {
        for byte in text.bytes() {
            match byte {
                b'\\' => self.bytes.extend_from_slice(br"\\"),
                b'\n' => self.bytes.extend_from_slice(br"\n"),
                b'\r' => self.bytes.extend_from_slice(br"\r"),
                b'\t' => self.bytes.extend_from_slice(br"\t"),
                other => self.bytes.push(other),
            }
        }
    }
}

/// A null value.
const NULL: &[u8] = br"\N";

/// Microseconds truncated, as sqlx binds a `DateTime` (PostgreSQL would
/// round the nanoseconds of a literal instead).
const TIMESTAMP: &str = "%Y-%m-%d %H:%M:%S%.6f+00";

/// `{"a","b"}`: every element quoted, so that none reads as NULL or splits.
pub(crate) fn array_literal(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|item| format!("\"{}\"", item.replace('\\', r"\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", quoted.join(","))
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use uuid::Uuid;

    use super::*;

    fn line(values: Vec<Value<'_>>) -> String {
        let columns: Vec<Column<'_>> = values
            .into_iter()
            .map(|value| Column::new("c", value))
            .collect();
        let mut text = CopyText::default();
        text.row(&columns);
        String::from_utf8(text.bytes).unwrap()
    }

    #[test]
    fn values_are_tab_separated_on_one_line_with_null_as_backslash_n() {
        let at = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(
            line(vec![
                Value::Uuid(Uuid::from_u128(1)),
                Value::BigInt(-42),
                Value::OptionalText(None),
                Value::OptionalTime(None),
                Value::Time(at),
                Value::OptionalText(Some("x")),
            ]),
            "00000000-0000-0000-0000-000000000001\t-42\t\\N\t\\N\t\
             2026-01-02 03:04:05.000000+00\tx\n"
        );
    }

    #[test]
    fn text_that_would_end_a_value_or_a_line_is_escaped() {
        assert_eq!(
            line(vec![Value::Text("a\tb\nc\rd\\e\\N")]),
            "a\\tb\\nc\\rd\\\\e\\\\N\n"
        );
        assert_eq!(line(vec![Value::OptionalText(Some("\\."))]), "\\\\.\n");
    }

    #[test]
    fn times_keep_microseconds_truncated_as_sqlx_binds_them() {
        let at = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap()
            + chrono::TimeDelta::nanoseconds(123_456_999);
        assert_eq!(
            line(vec![Value::Time(at)]),
            "2026-01-02 03:04:05.123456+00\n"
        );
    }

    #[test]
    fn arrays_quote_every_element_and_escape_for_the_literal_then_for_copy() {
        let items = vec![
            "users:read".to_owned(),
            "NULL".to_owned(),
            "a,\"b\"\\".to_owned(),
        ];
        assert_eq!(
            line(vec![Value::TextArray(&items), Value::TextArray(&[])]),
            "{\"users:read\",\"NULL\",\"a,\\\\\"b\\\\\"\\\\\\\\\"}\t{}\n"
        );
    }
}
