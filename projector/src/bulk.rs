//! A rebuild's first pass over the whole log: pages of events read by
//! position (the next one while a page is written), the views folded in memory ([`InMemory`]), the audit log's
//! rows copied page by page, and the views' rows copied once at the end.
//! One `COPY` per table instead of a read and a write per event and view.

use bus::Envelope;
use infra::event_log::{self, LogPosition};
use sqlx::{Connection, PgConnection};
use tokio::sync::mpsc;

use crate::apply::{self, ApplyError};
use crate::copy_text::copy_rows;
use crate::in_memory::InMemory;
use crate::views::roles::RoleRow;
use crate::views::sessions::SessionRow;
use crate::views::user_roles::UserRoleRow;
use crate::views::users::UserRow;
use crate::views::{
    AuditLogRow, ReadModel, Target, View, ViewRow, AUDIT_LOG, ROLES_VIEW, SESSIONS_VIEW,
    USERS_VIEW, USER_ROLES_VIEW,
};

/// Events per page: large enough that a round trip is little of a page's
/// cost, small enough that a page is little memory.
const PAGE: i64 = 10_000;

/// What the first pass did.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Events that fed one of the read models.
    pub events: u64,
    /// The last event read.
    pub up_to: LogPosition,
}

/// Replays every committed event into the new tables of `models`, which
/// are empty. `reader`, a connection of its own, reads the pages while
/// `db` writes.
pub async fn load(
    reader: PgConnection,
    db: &mut PgConnection,
    models: &[ReadModel],
) -> Result<Loaded, ApplyError> {
    let erased = infra::erased::erased_people(&mut *db).await?;
    let mut views = InMemory::new(erased);
    let mut loaded = Loaded::default();
    let audit_log = models.contains(&ReadModel::AuditLog);
    let mut pages = read_ahead(reader);
    while let Some(page) = pages.recv().await {
        let page = page?;
        let Some(last) = page.last() else {
            break;
        };
        loaded.up_to = LogPosition::of(last);
        let mut audit_rows = Vec::with_capacity(page.len());
        for envelope in &page {
            let fed = models
                .iter()
                .filter(|model| model.is_fed_by(&envelope.aggregate_type));
            let mut feeds = false;
            for model in fed {
                feeds = true;
                match model {
                    ReadModel::View(view) => {
                        apply::fold(db, &mut views, *view, envelope).await?;
                    }
                    ReadModel::AuditLog => audit_rows.push(AuditLogRow::of(envelope)),
                }
            }
            loaded.events += u64::from(feeds);
        }
        if audit_log {
            let table = Target::Rebuild.table(AUDIT_LOG);
            copy_rows(db, &table, &audit_rows, AuditLogRow::columns).await?;
        }
    }
    for model in models {
        if let ReadModel::View(view) = model {
            write_view(db, &views, *view).await?;
        }
    }
    Ok(loaded)
}

/// The log's pages in publishing order, each read while the one before is
/// folded and written; ends after an empty page or an error.
fn read_ahead(mut reader: PgConnection) -> mpsc::Receiver<sqlx::Result<Vec<Envelope>>> {
    let (pages, received) = mpsc::channel(1);
    tokio::spawn(async move {
        let mut after = LogPosition::default();
        loop {
            let page = event_log::read_committed_after(&mut reader, after, PAGE).await;
            let next = page
                .as_ref()
                .ok()
                .and_then(|page| page.last().map(LogPosition::of));
            if pages.send(page).await.is_err() {
                break;
            }
            match next {
                Some(next) => after = next,
                None => break,
            }
        }
        let _ = reader.close().await;
    });
    received
}

async fn write_view(db: &mut PgConnection, views: &InMemory, view: View) -> sqlx::Result<()> {
    let table = |live| Target::Rebuild.table(live);
    match view {
        View::Users => {
            copy_rows(db, &table(USERS_VIEW), views.users(), UserRow::columns).await?;
            let memberships = views.memberships();
            copy_rows(
                db,
                &table(USER_ROLES_VIEW),
                memberships,
                UserRoleRow::columns,
            )
            .await?;
        }
        View::Roles => {
            copy_rows(db, &table(ROLES_VIEW), views.roles(), RoleRow::columns).await?;
        }
        View::Sessions => {
            copy_rows(
                db,
                &table(SESSIONS_VIEW),
                views.sessions(),
                SessionRow::columns,
            )
            .await?;
        }
    }
    Ok(())
}
