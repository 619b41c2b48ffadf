//! A view's row as plain values, named by column, so that one executor can
//! write the rows of every view.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::View;

/// A column's value, of one of the SQL types the views use.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    Uuid(Uuid),
    Text(&'a str),
    OptionalText(Option<&'a str>),
    BigInt(i64),
    Time(DateTime<Utc>),
    OptionalTime(Option<DateTime<Utc>>),
    TextArray(&'a [String]),
}

/// A column and the value a row has in it.
#[derive(Clone, Debug, PartialEq)]
pub struct Column<'a> {
    pub name: &'static str,
    pub value: Value<'a>,
}

impl<'a> Column<'a> {
    pub fn new(name: &'static str, value: Value<'a>) -> Self {
        Self { name, value }
    }
}

/// A row of a view's first table: one aggregate, with the sequence of the
/// last event applied to it.
pub trait ViewRow: for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin + Clone {
    const VIEW: View;

    /// The aggregate's id, in the view's key column.
    fn key(&self) -> Uuid;

    /// The sequence of the last event applied.
    fn sequence(&self) -> i64;

    /// Every column, the key included, with the row's value.
    fn columns(&self) -> Vec<Column<'_>>;

    /// The person whose personal values the row holds (a session's user),
    /// if any: once that person is erased the row is written
    /// [`ViewRow::erased`], whatever order its events arrive in.
    fn person(&self) -> Option<Uuid> {
        None
    }

    /// The row with its person's personal values erased.
    fn erased(self) -> Self
    where
        Self: Sized,
    {
        self
    }
}
