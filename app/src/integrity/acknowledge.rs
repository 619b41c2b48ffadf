//! `api audit acknowledge`: an operator lets the checkpoint signer go on
//! from the newest checkpoint its own key signed that the log still holds
//! (or from the log's start), although the signer last signed another that
//! the log no longer extends (checkpoints deleted, history cut, an older
//! backup restored). The acknowledgement is an event of the log
//! (`audit_signer.log_acknowledged`, stream = the key's id) before the
//! signer's state file is rewritten; the running signer reads it at its
//! next look.

use cqrs_es::AggregateError;
use domain::{
    AcknowledgementReason, AuditSigner, AuditSignerCommand, AuditSignerError, SignedPoint,
};
use ed25519_dalek::VerifyingKey;
use infra::commands::CommandBus;
use infra::integrity::{
    key_id, Checkpoint, PublicKeys, SignerState, SignerStateError, SignerStateFile,
    CHECKPOINT_COLUMNS,
};
use sqlx::PgPool;

use crate::RequestContext;

#[derive(Debug, thiserror::Error)]
pub enum AcknowledgeError {
    #[error(transparent)]
    State(#[from] SignerStateError),
    #[error("reading the checkpoints")]
    Database(#[from] sqlx::Error),
    #[error("recording the acknowledgement")]
    Command(#[from] AggregateError<AuditSignerError>),
}

/// What was acknowledged, and the position of the event that records it.
#[derive(Debug)]
pub struct Acknowledged {
    pub previous: Option<Checkpoint>,
    pub adopted: Option<Checkpoint>,
    pub position: i64,
}

/// Records the acknowledgement, then points the state file at the newest
/// checkpoint `signer` signed that the log holds.
pub async fn acknowledge(
    pool: &PgPool,
    signer: &VerifyingKey,
    state_file: &SignerStateFile,
    reason: AcknowledgementReason,
    context: &RequestContext,
) -> Result<Acknowledged, AcknowledgeError> {
    let previous = state_file.load()?.and_then(|state| state.last_signed);
    let adopted = newest_signed_by(pool, signer).await?;
    let command = AuditSignerCommand::Acknowledge {
        previous: previous.as_ref().map(point),
        adopted: adopted.as_ref().map(point),
        reason,
    };
    let outcome = CommandBus::<AuditSigner>::new(pool.clone())
        .execute(&key_id(signer), command, &context.metadata_as(None))
        .await?;
    state_file.store(&SignerState {
        last_signed: adopted.clone(),
    })?;
    Ok(Acknowledged {
        previous,
        adopted,
        position: outcome.position,
    })
}

fn point(checkpoint: &Checkpoint) -> SignedPoint {
    SignedPoint {
        transaction_id: checkpoint.transaction_id,
        global_position: checkpoint.global_position,
        running_hash: checkpoint.running_hash.clone(),
        event_count: checkpoint.event_count,
    }
}

/// The newest checkpoint whose signature `signer` verifies: a checkpoint
/// another key signed (one a database administrator listed, say) is never
/// adopted.
async fn newest_signed_by(
    pool: &PgPool,
    signer: &VerifyingKey,
) -> sqlx::Result<Option<Checkpoint>> {
    let mut keys = PublicKeys::default();
    keys.insert(*signer);
    let checkpoints: Vec<Checkpoint> = sqlx::query_as(&format!(
        "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE key_id = $1 \
         ORDER BY transaction_id DESC, global_position DESC"
    ))
    .bind(key_id(signer))
    .fetch_all(pool)
    .await?;
    Ok(checkpoints
        .into_iter()
        .find(|checkpoint| checkpoint.verify(&keys).is_ok()))
}
