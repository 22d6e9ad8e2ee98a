//! The `reactivation` binary: every service of the product, its migrations, agent
//! accounts and the one-command development stack.
//!
//! Owns: command-line parsing and wiring (which services run in this process, with
//! which settings). Must not: hold business logic; each service lives in its crate.

mod checks;
mod dev;
mod history;
mod keys;
mod retention;
mod serve;

use clap::{Parser, Subcommand, ValueEnum};
use service_runtime::{Settings, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "reactivation",
    version,
    about = "Phone-number reactivation cases: services, migrations, dev stack"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs one service (or all of them) in this process until SIGTERM/Ctrl-C. Refuses
    /// to start with a published or weak secret, or on a database holding demo data.
    Serve {
        /// Which service.
        #[arg(value_enum)]
        service: Service,
    },
    /// Applies pending database migrations to DATABASE_URL.
    Migrate,
    /// Runs everything locally: a private Postgres (unless DATABASE_URL is set),
    /// migrations, demo data (private Postgres or --demo-data only), the carrier
    /// simulator and every service.
    Dev(dev::DevArgs),
    /// Agent accounts.
    Agent {
        #[command(subcommand)]
        command: AgentCommand,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The partitioned history: partitions, detaching old months.
    History {
        #[command(subcommand)]
        command: history::HistoryCommand,
    },
    /// The master secrets (REACTIVATION_SECRET_KEYS).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Retention of finished cases' personal data (REACTIVATION_RETENTION_*_DAYS).
    Retention {
        #[command(subcommand)]
        command: RetentionCommand,
    },
}

#[derive(Debug, Subcommand)]
enum RetentionCommand {
    /// Deletes the personal data of finished cases past their retention periods:
    /// destroys each case's data key (name and ID number unreadable everywhere,
    /// backups included), deletes evidence, explanations and codes. Keeps the event
    /// log, the audit log, decisions and complaints. In batches, resumable, idempotent.
    Run {
        /// Count what is due; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Cases per transaction.
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(i64).range(1..=10_000))]
        batch: i64,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Re-encrypts every sealed value not under the current key (the first of
    /// REACTIVATION_SECRET_KEYS), in batches with progress; resumable, idempotent.
    Rotate {
        /// Rows per transaction.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(i64).range(1..=10_000))]
        batch: i64,
    },
    /// Gives every case opened before per-case data keys existed a data key of its
    /// own (its name and ID number re-sealed under it), in batches; resumable,
    /// idempotent, safe with the services running. With --material, seals instead
    /// the evidence files, explanations and appeal statements stored in clear before
    /// material keys existed.
    Envelope {
        /// Cases per transaction.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(i64).range(1..=10_000))]
        batch: i64,
        /// Seal the material stored in clear (not the identities).
        #[arg(long)]
        material: bool,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Walks the hash chain from its anchor (the newest checkpoint of a detached range,
    /// else the first row); exits 1 and names the first row that does not match.
    Verify {
        /// Start after this checkpoint (see `history partitions`) instead.
        #[arg(long)]
        from_checkpoint: Option<i64>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Service {
    /// The public HTTP entry point (customer API, agent API, webhooks).
    Gateway,
    /// The identity-verification service (internal API).
    Identity,
    /// The risk-assessment worker.
    Risk,
    /// The provisioning worker.
    Provisioning,
    /// Subscriber notifications, SLA timers (reminders, expiry, escalation).
    Timers,
    /// The webhooks service: processes carrier webhooks, delivers outbound webhooks.
    Webhooks,
    /// The carrier simulator (test and demo double of the carrier).
    CarrierSim,
    /// Gateway, identity, risk, provisioning, timers and webhooks in one process.
    All,
}

#[derive(Debug, Subcommand)]
enum AgentCommand {
    /// Creates an agent account (argon2id password hash).
    Create {
        /// Login name (lower case letters, digits, '.', '_', '-').
        #[arg(long)]
        username: String,
        /// Password: at least 12 characters, not a common or breached password, not
        /// repeated or sequential characters, not containing the username.
        #[arg(long, env = "REACTIVATION_AGENT_PASSWORD", hide_env_values = true)]
        password: String,
        /// Role; repeat for several: cs, store, security, technical, supervisor, admin.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
    },
    /// Disables an account: its sessions end at once (audited).
    Disable {
        /// Login name.
        #[arg(long)]
        username: String,
    },
    /// Enables a disabled account (audited).
    Enable {
        /// Login name.
        #[arg(long)]
        username: String,
    },
    /// Replaces an account's roles (audited).
    Roles {
        /// Login name.
        #[arg(long)]
        username: String,
        /// Role; repeat for several: cs, store, security, technical, supervisor, admin.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
    },
    /// Sets a new password, clears any lock-out and ends the account's sessions (audited).
    ResetPassword {
        /// Login name.
        #[arg(long)]
        username: String,
        /// The new password (same policy as `create`).
        #[arg(long, env = "REACTIVATION_AGENT_PASSWORD", hide_env_values = true)]
        password: String,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("reactivation: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    telemetry::init(settings.log_format, &settings.log_filter);
    let result = match cli.command {
        Command::Serve { service } => serve::serve(service, settings).await,
        Command::Migrate => migrate(&settings).await,
        Command::Dev(args) => dev::run(args, settings).await,
        Command::Agent {
            command:
                AgentCommand::Create {
                    username,
                    password,
                    roles,
                },
        } => create_agent(&settings, &username, &password, &roles).await,
        Command::Agent { command } => administer_agent(&settings, command).await,
        Command::Audit {
            command: AuditCommand::Verify { from_checkpoint },
        } => history::verify_audit(&settings, from_checkpoint).await,
        Command::History { command } => history::run(&settings, command).await,
        Command::Keys {
            command: KeysCommand::Rotate { batch },
        } => keys::rotate(&settings, batch).await,
        Command::Keys {
            command: KeysCommand::Envelope { batch, material },
        } if material => retention::seal_material(&settings, batch).await,
        Command::Keys {
            command: KeysCommand::Envelope { batch, .. },
        } => retention::envelope(&settings, batch).await,
        Command::Retention {
            command: RetentionCommand::Run { dry_run, batch },
        } => retention::run(&settings, dry_run, batch).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("reactivation: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let pool = service_runtime::db::connect(settings.require_database_url()?, 2).await?;
    service_runtime::db::migrate(&pool, &case_store::MIGRATOR).await?;
    println!("migrations applied");
    Ok(())
}

/// Who the audit log names for changes made with this command line.
const CLI_ACTOR: &str = "reactivation-cli";

/// A use case's refusal as one line for the operator.
fn cli_error(e: case_workflows::WorkflowError) -> anyhow::Error {
    match e {
        case_workflows::WorkflowError::Invalid(errors) => anyhow::anyhow!(
            "{}",
            errors
                .iter()
                .map(|e| format!("--{} {}", e.field.trim_end_matches('s'), e.message))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        case_workflows::WorkflowError::NotFound => anyhow::anyhow!("no such agent"),
        other => anyhow::anyhow!("{other}"),
    }
}

/// Validates (username, roles, the password policy) and creates an agent account; audited.
pub(crate) async fn create_agent_in(
    pool: &sqlx::PgPool,
    username: &str,
    password: &str,
    roles: &[String],
) -> anyhow::Result<uuid::Uuid> {
    let actor = case_domain::Actor::system(CLI_ACTOR);
    let row = case_workflows::accounts::create(pool, &actor, username, password, roles)
        .await
        .map_err(cli_error)?;
    Ok(row.id)
}

/// Disables, enables, changes the roles of, or resets the password of an account.
async fn administer_agent(settings: &Settings, command: AgentCommand) -> anyhow::Result<()> {
    use case_workflows::accounts;
    let pool = service_runtime::db::connect(settings.require_database_url()?, 2).await?;
    let actor = case_domain::Actor::system(CLI_ACTOR);
    let id_of = |username: String| {
        let pool = pool.clone();
        async move {
            accounts::by_username(&pool, &username)
                .await
                .map(|a| a.id)
                .map_err(cli_error)
        }
    };
    let said = match command {
        AgentCommand::Create { .. } => anyhow::bail!("agent create is handled apart"),
        AgentCommand::Disable { username } => {
            let id = id_of(username.clone()).await?;
            accounts::set_enabled(&pool, &actor, id, false)
                .await
                .map_err(cli_error)?;
            format!("agent {username} disabled; its sessions are ended")
        }
        AgentCommand::Enable { username } => {
            let id = id_of(username.clone()).await?;
            accounts::set_enabled(&pool, &actor, id, true)
                .await
                .map_err(cli_error)?;
            format!("agent {username} enabled")
        }
        AgentCommand::Roles { username, roles } => {
            let id = id_of(username.clone()).await?;
            let row = accounts::set_roles(&pool, &actor, id, &roles)
                .await
                .map_err(cli_error)?;
            let names: Vec<&str> = row.roles.iter().map(|r| r.as_str()).collect();
            format!("agent {username}: roles now {}", names.join(", "))
        }
        AgentCommand::ResetPassword { username, password } => {
            let id = id_of(username.clone()).await?;
            accounts::reset_password(&pool, &actor, id, &password)
                .await
                .map_err(cli_error)?;
            format!("agent {username}: password reset; its sessions are ended")
        }
    };
    println!("{said}");
    Ok(())
}

async fn create_agent(
    settings: &Settings,
    username: &str,
    password: &str,
    roles: &[String],
) -> anyhow::Result<()> {
    let pool = service_runtime::db::connect(settings.require_database_url()?, 2).await?;
    let id = create_agent_in(&pool, username, password, roles).await?;
    println!(
        "agent {username} created (id {id}, roles {})",
        roles.join(", ")
    );
    Ok(())
}
