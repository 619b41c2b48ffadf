//! Many rows per statement: each column's values bound as one array and
//! turned back into rows by `unnest`, so that a batch writes a table in one
//! round trip whatever its number of rows.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{PgConnection, Postgres};
use uuid::Uuid;

use crate::copy_text::array_literal;
use crate::views::{Column, Value};

/// Inserts `rows` (each with the same columns, in the same order) unless a
/// row with the same `key` exists; returns how many were inserted.
pub async fn insert_if_absent(
    db: &mut PgConnection,
    table: &str,
    key: &[&str],
    rows: &[Vec<Column<'_>>],
) -> sqlx::Result<u64> {
    let Some(first) = rows.first() else {
        return Ok(0);
    };
    let arrays = Arrays::of(rows);
    let names: Vec<&str> = first.iter().map(|column| column.name).collect();
    let sql = format!(
        "INSERT INTO {table} ({}) SELECT {} FROM {} ON CONFLICT ({}) DO NOTHING",
        names.join(", "),
        arrays.selected().join(", "),
        arrays.unnest(1),
        key.join(", ")
    );
    let inserted = arrays.bind(sqlx::query(&sql)).execute(db).await?;
    Ok(inserted.rows_affected())
}

/// The column holding the sequence a row must be at to be updated.
const PREVIOUS: &str = "previous_sequence";

/// Replaces the values of each row of `rows` whose `key` is at the sequence
/// paired with it; returns how many were.
pub async fn update_at_sequence(
    db: &mut PgConnection,
    table: &str,
    key: &str,
    rows: &[(i64, Vec<Column<'_>>)],
) -> sqlx::Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let guarded: Vec<Vec<Column<'_>>> = rows
        .iter()
        .map(|(previous, row)| {
            let mut columns = vec![Column::new(PREVIOUS, Value::BigInt(*previous))];
            columns.extend(row.iter().cloned());
            columns
        })
        .collect();
    let arrays = Arrays::of(&guarded);
    let assignments: Vec<String> = arrays
        .columns
        .iter()
        .zip(arrays.selected())
        .filter(|((name, _), _)| ![PREVIOUS, key].contains(name))
        .map(|((name, _), value)| format!("{name} = {value}"))
        .collect();
    let sql = format!(
        "UPDATE {table} SET {} FROM {} \
         WHERE {table}.{key} = u.{key} AND {table}.sequence = u.{PREVIOUS}",
        assignments.join(", "),
        arrays.unnest(1),
    );
    let updated = arrays.bind(sqlx::query(&sql)).execute(db).await?;
    Ok(updated.rows_affected())
}

/// Deletes the rows whose two key columns hold one of `keys`.
pub async fn delete_pairs(
    db: &mut PgConnection,
    table: &str,
    columns: [&str; 2],
    keys: &[(Uuid, Uuid)],
) -> sqlx::Result<u64> {
    if keys.is_empty() {
        return Ok(0);
    }
    let [first, second] = columns;
    let sql = format!(
        "DELETE FROM {table} USING unnest($1::uuid[], $2::uuid[]) AS d(a, b) \
         WHERE {table}.{first} = d.a AND {table}.{second} = d.b"
    );
    let (a, b): (Vec<Uuid>, Vec<Uuid>) = keys.iter().copied().unzip();
    let deleted = sqlx::query(&sql).bind(a).bind(b).execute(db).await?;
    Ok(deleted.rows_affected())
}

/// One array per column, named after it.
struct Arrays<'a> {
    columns: Vec<(&'static str, Values<'a>)>,
}

impl<'a> Arrays<'a> {
    fn of(rows: &[Vec<Column<'a>>]) -> Self {
        let mut columns: Vec<(&'static str, Values<'a>)> = rows[0]
            .iter()
            .map(|column| (column.name, Values::like(&column.value)))
            .collect();
        for row in rows {
            for ((_, array), column) in columns.iter_mut().zip(row) {
                array.push(&column.value);
            }
        }
        Self { columns }
    }

    /// `unnest($first::uuid[], ...) AS u(name, ...)`.
    fn unnest(&self, first: usize) -> String {
        let parameters: Vec<String> = self
            .columns
            .iter()
            .zip(first..)
            .map(|((_, array), number)| format!("${number}::{}", array.sql_type()))
            .collect();
        let names: Vec<&str> = self.columns.iter().map(|(name, _)| *name).collect();
        format!(
            "unnest({}) AS u({})",
            parameters.join(", "),
            names.join(", ")
        )
    }

    /// Each column's value as read from `u`.
    fn selected(&self) -> Vec<String> {
        self.columns
            .iter()
            .map(|(name, array)| match array {
                Values::TextArray(_) => format!("u.{name}::text[]"),
                _ => format!("u.{name}"),
            })
            .collect()
    }

    fn bind<'q>(self, query: Query<'q, Postgres, PgArguments>) -> Query<'q, Postgres, PgArguments>
    where
        'a: 'q,
    {
        self.columns
            .into_iter()
            .fold(query, |query, (_, array)| match array {
                Values::Uuid(values) => query.bind(values),
                Values::Text(values) => query.bind(values),
                Values::BigInt(values) => query.bind(values),
                Values::Time(values) => query.bind(values),
                Values::TextArray(values) => query.bind(values),
            })
    }
}

/// A column's values, of one SQL type.
enum Values<'a> {
    Uuid(Vec<Uuid>),
    Text(Vec<Option<&'a str>>),
    BigInt(Vec<i64>),
    Time(Vec<Option<DateTime<Utc>>>),
    /// Values literals, cast back to `text[]` once unnested (`unnest` of a
    /// two-dimensional array would flatten it).
    TextArray(Vec<String>),
}

impl<'a> Values<'a> {
    fn like(value: &Value<'_>) -> Self {
        match value {
            Value::Uuid(_) => Self::Uuid(Vec::new()),
            Value::Text(_) | Value::OptionalText(_) => Self::Text(Vec::new()),
            Value::BigInt(_) => Self::BigInt(Vec::new()),
            Value::Time(_) | Value::OptionalTime(_) => Self::Time(Vec::new()),
            Value::TextArray(_) => Self::TextArray(Vec::new()),
        }
    }

    fn sql_type(&self) -> &'static str {
        match self {
            Self::Uuid(_) => "uuid[]",
            Self::Text(_) | Self::TextArray(_) => "text[]",
            Self::BigInt(_) => "int8[]",
            Self::Time(_) => "timestamptz[]",
        }
    }

    fn push(&mut self, value: &Value<'a>) {
        match (self, value) {
            (Self::Uuid(values), Value::Uuid(value)) => values.push(*value),
            (Self::Text(values), Value::Text(value)) => values.push(Some(value)),
            (Self::Text(values), Value::OptionalText(value)) => values.push(*value),
            (Self::BigInt(values), Value::BigInt(value)) => values.push(*value),
            (Self::Time(values), Value::Time(value)) => values.push(Some(*value)),
            (Self::Time(values), Value::OptionalTime(value)) => values.push(*value),
            (Self::TextArray(values), Value::TextArray(value)) => {
                values.push(array_literal(value));
            }
            (_, value) => unreachable!("a column holds values of one type, not {value:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_column_is_unnested_from_an_array_of_its_type_and_numbered() {
        let names = vec!["admin".to_owned()];
        let row = vec![
            Column::new("id", Value::Uuid(Uuid::nil())),
            Column::new("name", Value::OptionalText(None)),
            Column::new("permissions", Value::TextArray(&names)),
            Column::new("at", Value::OptionalTime(None)),
            Column::new("sequence", Value::BigInt(3)),
        ];
        let arrays = Arrays::of(&[row]);
        assert_eq!(
            arrays.unnest(2),
            "unnest($2::uuid[], $3::text[], $4::text[], $5::timestamptz[], $6::int8[]) \
             AS u(id, name, permissions, at, sequence)"
        );
        assert_eq!(
            arrays.selected(),
            [
                "u.id",
                "u.name",
                "u.permissions::text[]",
                "u.at",
                "u.sequence"
            ]
        );
    }
}
