use api::settings::{AdminCommand, AuditCommand, Cli, Command, ServiceAccountAdmin};
use api::startup::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse_args();
    match cli.command {
        // A provisioning script reads the command's result off stdout.
        Some(Command::Admin { .. }) => {
            infra::telemetry::init_on_stderr(cli.settings.common.log_format)
        }
        _ => infra::telemetry::init(cli.settings.common.log_format),
    }
    let common = &cli.settings.common;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate => {
            let pool = infra::db::create_and_connect(&common.database_url, 1).await?;
            infra::db::migrate(&pool).await?;
            tracing::info!("migrations applied");
        }
        Command::Admin {
            command:
                AdminCommand::Bootstrap {
                    email,
                    display_name,
                    password_file,
                },
        } => {
            let done = api::admin::bootstrap_admin(
                common,
                &email,
                &display_name,
                password_file.as_deref(),
            )
            .await?;
            println!(
                "admin user {} ({}), role admin {} ({})",
                done.user_id,
                if done.created_user {
                    "created"
                } else {
                    "existed"
                },
                done.role_id,
                if done.created_role {
                    "created"
                } else {
                    "existed"
                },
            );
        }
        Command::Admin {
            command: AdminCommand::EraseUser { user_id },
        } => {
            let position = api::admin::erase_user(common, user_id).await?;
            println!("user {user_id} erased (position {position})");
        }
        Command::Admin {
            command:
                AdminCommand::ServiceAccount {
                    command:
                        ServiceAccountAdmin::Create {
                            name,
                            description,
                            roles,
                            scope,
                            expires_in_days,
                        },
                },
        } => {
            let request = api::admin::AccountRequest {
                name: &name,
                description: &description,
                roles: &roles,
                scope: &scope,
                expires_in_days,
                max_lifetime_days: cli.settings.auth.api_key_max_lifetime_days,
            };
            let created = api::admin::create_service_account(common, request).await?;
            println!("{}", serde_json::to_string(&created)?);
        }
        Command::Audit {
            command: AuditCommand::Export { output, filters },
        } => {
            let summary = api::audit_export::export_to_file(common, filters, &output).await?;
            println!("{summary}");
        }
        Command::Audit {
            command:
                AuditCommand::Verify {
                    export,
                    public_key,
                    trusted_checkpoints,
                },
        } => {
            let trusted = trusted_checkpoints
                .as_deref()
                .map(api::audit_verify::read_trusted_checkpoints)
                .transpose()?
                .unwrap_or_default();
            let report = match (&export, &public_key) {
                (Some(export), Some(public_key)) => {
                    api::audit_verify::verify_export(export, public_key, trusted)?
                }
                _ => {
                    api::audit_verify::verify_database(common, public_key.as_deref(), &trusted)
                        .await?
                }
            };
            println!("{}", serde_json::to_string_pretty(&report)?);
            if !report.ok {
                std::process::exit(1);
            }
        }
        Command::Audit {
            command: AuditCommand::PublicKey,
        } => print!("{}", api::audit_verify::public_keys_pem(common).await?),
        Command::Audit {
            command: AuditCommand::Acknowledge { reason },
        } => {
            let done =
                api::audit_acknowledge::acknowledge_log(common, &cli.settings.relay, &reason)
                    .await?;
            let at = |checkpoint: &Option<infra::integrity::Checkpoint>| {
                checkpoint.as_ref().map_or_else(
                    || "the start of the log".to_owned(),
                    |c| format!("{} events (position {})", c.event_count, c.global_position),
                )
            };
            println!(
                "acknowledged (position {}): the signer last signed {}, goes on from {}",
                done.position,
                at(&done.previous),
                at(&done.adopted)
            );
        }
        Command::Audit {
            command: AuditCommand::Checkpoints { output },
        } => {
            let written = api::audit_verify::checkpoints_to_file(common, &output).await?;
            println!("{written} checkpoints written to {}", output.display());
        }
        Command::Serve => {
            let application = Application::build(cli.settings).await?;
            tracing::info!(port = application.port(), "api listening");
            application.run_until_stopped().await?;
        }
    }
    Ok(())
}
