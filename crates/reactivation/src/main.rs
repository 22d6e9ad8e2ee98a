//! The `reactivation` binary: every service of the product, its migrations, agent
//! accounts and the one-command development stack.
//!
//! Owns: command-line parsing and wiring (which services run in this process, with
//! which settings). Must not: hold business logic; each service lives in its crate.

mod checks;
mod dev;
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
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Walks the hash chain; exits 1 and names the first row that does not match.
    Verify,
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
        /// Password (at least 12 characters).
        #[arg(long)]
        password: String,
        /// Role; repeat for several: cs, security, technical, supervisor, admin.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
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
        Command::Audit {
            command: AuditCommand::Verify,
        } => verify_audit(&settings).await,
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

/// Validates and creates an agent account.
pub(crate) async fn create_agent_in(
    pool: &sqlx::PgPool,
    username: &str,
    password: &str,
    roles: &[String],
) -> anyhow::Result<uuid::Uuid> {
    let mut parsed = Vec::new();
    for r in roles {
        match case_domain::Role::parse(r) {
            Some(role) if role.is_agent_role() => {
                if !parsed.contains(&role) {
                    parsed.push(role);
                }
            }
            _ => anyhow::bail!(
                "--role {r} is not an agent role (cs, security, technical, supervisor, admin)"
            ),
        }
    }
    let valid_name = username.len() >= 2
        && username.len() <= 63
        && username
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && username.as_bytes()[0].is_ascii_alphanumeric();
    if !valid_name {
        anyhow::bail!(
            "--username must be 2 to 63 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit"
        );
    }
    if password.chars().count() < 12 {
        anyhow::bail!("--password must have at least 12 characters");
    }
    let hash = data_protection::hash_password(password.to_owned()).await?;
    Ok(case_store::agents::create_agent(pool, username, &hash, &parsed).await?)
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

async fn verify_audit(settings: &Settings) -> anyhow::Result<()> {
    let pool = service_runtime::db::connect(settings.require_database_url()?, 2).await?;
    let mut conn = pool.acquire().await?;
    match case_store::audit::verify_chain(&mut conn).await? {
        case_store::audit::ChainReport::Intact(rows) => {
            println!("audit chain intact: {rows} rows");
            Ok(())
        }
        case_store::audit::ChainReport::Broken { seq, problem } => {
            anyhow::bail!("audit chain broken at row seq={seq}: {problem}")
        }
    }
}
