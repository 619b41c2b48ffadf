//! `api audit acknowledge`: lets a refusing checkpoint signer go on from
//! the newest checkpoint its key signed that the log still holds, recorded
//! in the log as `audit_signer.log_acknowledged`. Run it where the signer's
//! key and state file are (the relay's host), after finding out why the
//! log no longer extends what the signer last signed.

use anyhow::Context;
use app::integrity::{acknowledge, Acknowledged};
use app::RequestContext;
use domain::AcknowledgementReason;
use infra::integrity::{signer_state_file, SignerStateFile};
use infra::settings::CommonSettings;
use relay::settings::RelayArgs;
use uuid::Uuid;

pub async fn acknowledge_log(
    common: &CommonSettings,
    relay: &RelayArgs,
    reason: &str,
) -> anyhow::Result<Acknowledged> {
    let reason = AcknowledgementReason::parse(reason).context("--reason")?;
    let key = infra::key_file::load_signing_key(
        &relay.audit_signing_key_file,
        false,
        "audit signing key",
    )?;
    let state_file = SignerStateFile::new(signer_state_file(&relay.audit_signing_key_file));
    let pool = infra::db::connect(&common.database_url, 2)
        .await
        .context("connect to the database")?;
    let context = RequestContext {
        correlation_id: Uuid::new_v4().to_string(),
        request_ip: None,
        user_agent: Some("api audit acknowledge".into()),
    };
    acknowledge(&pool, &key.verifying_key(), &state_file, reason, &context)
        .await
        .context("acknowledging the log")
}
