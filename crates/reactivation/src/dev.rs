//! `reactivation dev`: the whole product on one machine, for a new engineer.
//!
//! Demo data (the demo subscribers at the simulator, the demo agents with their
//! published password, marked `agents.demo`) goes only into `dev`'s own private
//! cluster, or into `DATABASE_URL` with `--demo-data`. `serve` refuses a database
//! holding a demo agent, and every secret published here (`crate::checks`).

use std::path::PathBuf;

use anyhow::Context;
use carrier_sim::demo;
use local_postgres::LocalCluster;
use service_runtime::{Settings, Shutdown, config::InternalTokens, db};
use tokio::task::JoinSet;

use crate::{
    Service,
    serve::{Wiring, supervise},
};

/// Options of `reactivation dev`.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Where the private Postgres cluster keeps its data (used when DATABASE_URL is not set).
    #[arg(long, default_value = ".data/pg-dev")]
    data_dir: PathBuf,
    /// Port of the private Postgres cluster.
    #[arg(long, default_value_t = 55433)]
    pg_port: u16,
    /// Seed the demo subscribers and demo agents (published password) into the
    /// database in DATABASE_URL too. Without DATABASE_URL, `dev` always seeds its
    /// private cluster.
    #[arg(long)]
    demo_data: bool,
}

/// The master secret `dev` uses when REACTIVATION_SECRET_KEY is not set. Demo only:
/// published, so `serve` refuses it.
pub const DEV_SECRET_KEY: &str =
    "cmVhY3RpdmF0aW9uLWRldi1vbmx5LXNlY3JldC1rZXktbm90LWZvci1wcm9kdWN0aW9u";

/// The carrier webhook secret `dev` uses (and prints) when
/// REACTIVATION_CARRIER_WEBHOOK_SECRETS is not set; the simulator signs with it. Demo
/// only: published, so `serve` refuses it.
pub const DEV_WEBHOOK_SECRET: &str = "whsec_cmVhY3RpdmF0aW9uLWRldi1vbmx5LXdlYmhvb2sta2V5";
/// [`DEV_WEBHOOK_SECRET`] without its prefix.
pub const DEV_WEBHOOK_SECRET_BASE64: &str = "cmVhY3RpdmF0aW9uLWRldi1vbmx5LXdlYmhvb2sta2V5";

/// Demo agent accounts: (username, role).
pub const DEMO_AGENTS: &[(&str, &str)] = &[
    ("cs.demo", "cs"),
    ("store.demo", "store"),
    ("security.demo", "security"),
    ("security2.demo", "security"),
    ("technical.demo", "technical"),
    ("supervisor.demo", "supervisor"),
    ("admin.demo", "admin"),
];
/// The demo agents' password.
pub const DEMO_PASSWORD: &str = "reactivate-demo-2026";

pub async fn run(args: DevArgs, mut settings: Settings) -> anyhow::Result<()> {
    let mut cluster = None;
    let seed = settings.database_url.is_none() || args.demo_data;
    let database_url = match settings.database_url.clone() {
        Some(url) => {
            println!("Using the database in DATABASE_URL.");
            if !args.demo_data {
                println!(
                    "Not seeding demo data into it (pass --demo-data to load the demo subscribers and the demo agents; `reactivation serve` refuses a database holding them). Create agents with `reactivation agent create`."
                );
            }
            url
        }
        None => {
            let (data_dir, port) = (args.data_dir.clone(), args.pg_port);
            let started = tokio::task::spawn_blocking(
                move || -> Result<(LocalCluster, String), local_postgres::Error> {
                    let c = LocalCluster::start(&data_dir, port)?;
                    c.ensure_database("reactivation")?;
                    let url = c.database_url("reactivation");
                    Ok((c, url))
                },
            )
            .await?;
            let (c, url) = started.map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "Started a private PostgreSQL in {} on port {}.",
                c.data_dir().display(),
                c.port()
            );
            cluster = Some(c);
            url
        }
    };
    let result = run_stack(&mut settings, database_url, seed).await;
    if let Some(c) = cluster.filter(|c| !c.was_already_running()) {
        println!("Stopping the private PostgreSQL.");
        if let Err(e) = tokio::task::spawn_blocking(move || c.stop()).await? {
            eprintln!("could not stop PostgreSQL: {e}");
        }
    }
    result
}

async fn run_stack(
    settings: &mut Settings,
    database_url: String,
    seed: bool,
) -> anyhow::Result<()> {
    settings.database_url = Some(database_url);
    if settings.secret_key.is_none() {
        settings.secret_key = Some(DEV_SECRET_KEY.to_owned());
    }
    if settings.internal_tokens.is_empty() {
        // A fresh credential per run for the gateway's calls to the identity service.
        settings.internal_tokens = InternalTokens::generate();
    }
    if settings.carrier_webhook_secrets.is_empty() {
        settings.carrier_webhook_secrets = vec![webhooks::Secret::parse(DEV_WEBHOOK_SECRET)?];
    }
    if settings.sim_webhook_url.is_none() {
        // The simulator signs with the secret the gateway accepts first.
        settings.sim_webhook_url = Some(format!(
            "http://{}/v1/webhooks/carrier",
            settings.gateway_addr
        ));
        settings.sim_webhook_secret = Some(settings.carrier_webhook_secrets[0].clone());
    }
    let pool = db::connect(
        settings.require_database_url()?,
        settings.db_max_connections + crate::serve::listen_connections(Service::All) + 2,
    )
    .await?;
    db::migrate(&pool, &case_store::MIGRATOR).await?;
    carrier_sim::prepare(&pool).await?;
    if seed {
        demo::seed(&pool)
            .await
            .context("loading the demo subscribers")?;
        seed_demo_agents(&pool).await?;
    }

    let shutdown = Shutdown::on_signals();
    let wiring = Wiring::new(pool, settings.clone(), shutdown.clone());
    let mut tasks = JoinSet::new();
    wiring.start(Service::CarrierSim, &mut tasks).await?;
    wiring.start(Service::All, &mut tasks).await?;
    wiring.start_case_gauges(&mut tasks);
    print_banner(settings, seed);
    supervise(tasks, &shutdown).await
}

/// Creates the demo agents that do not exist yet, each marked `demo` in the same
/// transaction, and marks the existing ones (accounts of an older `dev`).
pub(crate) async fn seed_demo_agents(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    for (username, role) in DEMO_AGENTS {
        if case_store::agents::find_agent(pool, username)
            .await?
            .is_some()
        {
            continue;
        }
        let role = case_domain::Role::parse(role).context("a demo agent's role")?;
        let hash = data_protection::hash_password(DEMO_PASSWORD.to_owned()).await?;
        let mut tx = pool.begin().await?;
        match case_store::agents::create_agent(&mut *tx, username, &hash, &[role]).await {
            Ok(id) => {
                case_store::demo::mark_demo_agent(&mut *tx, id).await?;
                tx.commit().await?;
            }
            Err(case_store::StoreError::UsernameTaken) => tx.rollback().await?,
            Err(e) => return Err(e.into()),
        }
    }
    let names: Vec<String> = DEMO_AGENTS.iter().map(|(u, _)| (*u).to_owned()).collect();
    case_store::demo::mark_demo_agents_named(pool, &names).await?;
    Ok(())
}

fn print_banner(settings: &Settings, seeded: bool) {
    let gw = format!("http://{}", settings.gateway_addr);
    let sim = format!("http://{}", settings.carrier_sim_addr);
    let mut out = String::new();
    out.push_str("\n=== Reactivation is running ===\n");
    out.push_str(&format!(
        "Customer API (gateway) : {gw}   (OpenAPI: {gw}/openapi.json)\n"
    ));
    out.push_str(&format!("Agent API              : {gw}/v1/agent/login\n"));
    let login = if seeded {
        "log in with a demo agent below"
    } else {
        "log in with an agent you create"
    };
    out.push_str(&format!(
        "Agent console          : {gw}/console   ({login})\n"
    ));
    out.push_str(&format!(
        "Carrier simulator      : {sim}   (messages sent: {sim}/sim/outbox)\n"
    ));
    out.push_str(&format!("Metrics                : {gw}/metrics\n"));
    let demo_secret = webhooks::Secret::parse(DEV_WEBHOOK_SECRET).ok();
    let secret_note = if settings.carrier_webhook_secrets.first() == demo_secret.as_ref() {
        format!("demo secret {DEV_WEBHOOK_SECRET}")
    } else {
        "secrets from REACTIVATION_CARRIER_WEBHOOK_SECRETS".to_owned()
    };
    out.push_str(&format!(
        "Carrier webhooks in    : POST {gw}/v1/webhooks/carrier   ({secret_note}; the simulator signs with it)\n"
    ));
    out.push_str(&format!(
        "Webhooks service       : http://{}/healthz   (outbound endpoints: {gw}/v1/agent/webhook-endpoints, an admin)\n",
        settings.webhooks_addr
    ));
    if !seeded {
        out.push_str(&format!(
            "\nNo demo data was seeded (DATABASE_URL without --demo-data): create agents with `reactivation agent create`, subscribers with POST {sim}/sim/subscribers.\n"
        ));
        out.push_str("\nPress Ctrl-C to stop.\n");
        println!("{out}");
        return;
    }
    out.push_str(&format!(
        "\nDemo agent logins (password `{DEMO_PASSWORD}`):\n"
    ));
    for (username, role) in DEMO_AGENTS {
        out.push_str(&format!("  {username:<16} {role}\n"));
    }
    out.push_str("\nDemo subscribers at the simulated carrier:\n");
    for s in demo::ALL {
        out.push_str(&format!(
            "  [{}] {} — {}\n      {}\n",
            s.key, s.msisdn, s.summary, s.how_to_try
        ));
    }
    let clean = demo::CLEAN;
    out.push_str("\nTry the clean journey (copy these lines into a shell):\n");
    out.push_str(&format!(
        "  R=$(curl -s -X POST {gw}/v1/cases -H 'content-type: application/json' -d '{{\"msisdn\":\"{}\",\"full_name\":\"{}\",\"id_number\":\"{}\",\"channel\":\"web\",\"locale\":\"en\"}}'); echo \"$R\"\n",
        clean.msisdn, clean.full_name, clean.id_number
    ));
    out.push_str("  CASE=$(echo \"$R\" | grep -o '\"case_id\":\"[^\"]*\"' | cut -d'\"' -f4); TOKEN=$(echo \"$R\" | grep -o '\"case_token\":\"[^\"]*\"' | cut -d'\"' -f4)\n");
    out.push_str(&format!(
        "  curl -s -X POST {gw}/v1/cases/$CASE/verifications -H \"authorization: Bearer $TOKEN\" -H 'content-type: application/json' -d '{{\"method\":\"service_password\",\"password\":\"{}\"}}'; echo\n",
        clean.service_password
    ));
    out.push_str(&format!(
        "  sleep 2; curl -s {gw}/v1/cases/$CASE -H \"authorization: Bearer $TOKEN\"; echo\n"
    ));
    out.push_str(&format!(
        "  curl -s {sim}/sim/subscribers/{}; echo\n",
        clean.msisdn.replace('+', "%2B")
    ));
    out.push_str("Or with a one-time code instead of the password:\n");
    out.push_str(&format!(
        "  curl -s -X POST {gw}/v1/cases/$CASE/otp -H \"authorization: Bearer $TOKEN\"; echo\n"
    ));
    if let Some(to) = clean.contact_address() {
        out.push_str(&format!(
            "  curl -s '{sim}/sim/outbox?to={}'; echo   # read the code\n",
            to.replace('+', "%2B")
        ));
    }
    out.push_str(&format!(
        "  curl -s -X POST {gw}/v1/cases/$CASE/verifications -H \"authorization: Bearer $TOKEN\" -H 'content-type: application/json' -d '{{\"method\":\"otp\",\"code\":\"CODE\"}}'; echo\n"
    ));
    out.push_str(
        "\nCarrier webhooks from the simulator (signed; see the webhook log at /sim/webhooks):\n",
    );
    out.push_str(&format!(
        "  curl -s -X POST {sim}/sim/subscribers/{}/signals -H 'content-type: application/json' -d '{{\"fraud_linked_contacts\":3,\"sms_peak_per_hour\":600}}'; echo\n",
        demo::FLAGGED.msisdn.replace('+', "%2B")
    ));
    out.push_str(&format!("  curl -s {sim}/sim/webhooks; echo\n"));
    out.push_str("\nPress Ctrl-C to stop.\n");
    println!("{out}");
}
