//! `bench`: drives clean reactivation journeys over HTTP and prints throughput and
//! latency, then a raw-SQL baseline of case creation for comparison.
//!
//! Owns: the command line, the order of the phases (register → journeys → create-only
//! → raw SQL) and the report. With `--start-stack` it starts the product itself through
//! the system-test harness (separate `reactivation serve` processes, fresh database,
//! all torn down at the end or on Ctrl-C).
//!
//! Must not: touch a running stack's data except through its HTTP API (it reads
//! `case_events`, nothing more), or send traffic anywhere but the URLs it is given.
//! Exit codes: 0 all journeys reached `reactivated`; 1 a journey failed or timed out;
//! 2 the bench could not run (stack, registration, database or baseline error).

use std::{
    collections::BTreeMap,
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, bail};
use bench::{
    baseline::{self, BaselineResult},
    events::{self, StageReport},
    fixtures::{BenchSubscriber, MAX_CASES, Series, run_tag},
    goals,
    journey::{self, Created, JourneyFailure, JourneyRecord, JourneySettings, run_indexed},
    promtext::{self, Histogram},
    report::{cpus, kv, latency_header, latency_row, load_average, ms},
    stats::{rate, summarize},
};
use clap::Parser;
use reqwest::Client;
use system_tests::{Stack, StackOptions};

/// Drives clean reactivation journeys over HTTP against a running stack (or one it
/// starts) and compares case creation with raw SQL inserts.
///
/// Three modes: closed-loop journeys (the default); `--rate R --duration S`, open-loop
/// case creation and verify → reactivated journeys at R/s with the raw-SQL baseline;
/// and `goals`, every figure of issue 12's goal table in one run.
#[derive(Debug, Clone, Parser)]
#[command(name = "bench", version)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Base URL of the gateway (ignored with --start-stack). Start that gateway with
    /// `REACTIVATION_RATE_LIMITS=off`: every bench request comes from one address.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8080")]
    gateway: String,
    /// Base URL of the carrier simulator (ignored with --start-stack).
    #[arg(long, global = true, default_value = "http://127.0.0.1:8090")]
    carrier: String,
    /// The stack's database (read for `case_events`); its server also hosts the raw-SQL
    /// baseline's scratch database. With --start-stack: the server to create the stack's
    /// fresh database on (must equal DATABASE_URL in the environment).
    #[arg(long, global = true, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// Number of journeys (and of create-only calls and raw inserts); with --rate and in
    /// `goals`, the creates of the create-capacity figure and the baseline's transactions.
    #[arg(long, global = true, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_CASES)))]
    cases: u32,
    /// Requests in flight at once in closed-loop phases, and connections of the raw-SQL
    /// baseline.
    #[arg(long, global = true, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    concurrency: u32,
    /// Start the product as separate `reactivation serve …` processes (REACTIVATION_BIN,
    /// else target/debug/reactivation) on free ports against a fresh database on
    /// DATABASE_URL's server, with the carrier simulator on a database of its own, and
    /// stop it at the end.
    #[arg(long, global = true)]
    start_stack: bool,
    /// With --start-stack: each service's pool size (REACTIVATION_DB_MAX_CONNECTIONS);
    /// by default the system-test harness's 5.
    #[arg(long, global = true, value_parser = clap::value_parser!(u32).range(1..=200))]
    db_connections: Option<u32>,
    /// With --start-stack: how long the product holds a case's state message so that
    /// the next transition within it replaces it (REACTIVATION_MESSAGE_WINDOW_SECONDS).
    /// The product's default (20 s), so a clean journey sends the messages it sends in
    /// production; the system-test harness runs with 0 (every message at once).
    #[arg(long, global = true, default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=3600))]
    message_window: u32,
    /// With --start-stack: one more environment variable for every service, as
    /// `NAME=VALUE` (repeatable), to compare a setting's values side by side, e.g.
    /// `--service-env REACTIVATION_FOLLOW_GATHER_MS=0`.
    #[arg(long = "service-env", global = true, value_parser = parse_service_env)]
    service_env: Vec<(String, String)>,
    /// Open loop: arrivals per second of the create stage and of the verifications.
    #[arg(long)]
    rate: Option<f64>,
    /// Open loop: how long each stage issues arrivals, in seconds.
    #[arg(long, global = true, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
    duration: u64,
    /// Seed this many finished cases (with their events) into the product's database
    /// before measuring.
    #[arg(long, default_value_t = 0)]
    history: u64,
    /// Open loop: at most this many requests outstanding; a start beyond is dropped.
    #[arg(long, global = true, default_value_t = 2000)]
    max_in_flight: usize,
    /// Pause between two status polls of a case, in milliseconds.
    #[arg(long, default_value_t = 20)]
    poll_ms: u64,
    /// How long a case may take from its create call to `reactivated`, in seconds.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
    /// A service's `/metrics` URL to read `handoff_latency_seconds` and
    /// `http_request_duration_seconds` from, before and after the journeys (repeatable;
    /// with --start-stack every service's is used).
    #[arg(long = "metrics-url")]
    metrics_urls: Vec<String>,
    /// Skip the create-only phase.
    #[arg(long)]
    skip_create_only: bool,
    /// Skip the raw-SQL baseline.
    #[arg(long)]
    skip_baseline: bool,
}

#[derive(Debug, Clone, clap::Subcommand)]
enum Command {
    /// Every figure of issue 12's goal table in one run: create capacity against the
    /// raw-SQL baseline, verify → reactivated at the offered rates, create and journey
    /// p99 with a small and a large history, and transactions per journey.
    Goals(GoalArgs),
}

#[derive(Debug, Clone, clap::Args)]
struct GoalArgs {
    /// The small history (finished cases seeded first).
    #[arg(long, default_value_t = 10_000)]
    history_small: u64,
    /// The large history (seeded on top, after the small-history figures).
    #[arg(long, default_value_t = 1_000_000)]
    history_large: u64,
    /// Offered rate of the history comparisons (creates/s and verifications/s).
    #[arg(long, default_value_t = 50.0)]
    history_rate: f64,
    /// Offered rates of the verify → reactivated figures.
    #[arg(long, value_delimiter = ',', default_values_t = [100.0, 200.0])]
    journey_rates: Vec<f64>,
    /// Rounds of the history comparison at each size (its figure: the median p99).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=10))]
    history_rounds: u16,
}

/// Where the bench sends its traffic and reads its data.
#[derive(Debug)]
struct Target {
    gateway: String,
    carrier: String,
    /// The stack's database, for `case_events`.
    events_db: Option<String>,
    /// A server connection that may create the scratch database.
    admin_db: Option<String>,
    /// (service, `/metrics` URL).
    metrics: Vec<(String, String)>,
    describe: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let outcome = tokio::select! {
        outcome = run(args) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The carrier simulator's own database (so the product's transaction counters hold the
/// product's work only); dropped when this is dropped, like the stack's own.
#[derive(Debug)]
struct SimDatabase {
    admin_url: String,
    name: String,
}

impl Drop for SimDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop is sync: a private runtime on a thread, as the harness's Stack does.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(admin) = sqlx::PgPool::connect(&admin_url).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&admin)
                        .await;
                }
            });
        })
        .join();
    }
}

/// A stack the bench started. Field order matters: the processes stop before the
/// simulator's database is dropped.
#[derive(Debug)]
struct Started {
    stack: Stack,
    _sim: SimDatabase,
}

async fn start_stack(args: &Args) -> anyhow::Result<Started> {
    let env_url = std::env::var("DATABASE_URL")
        .context("--start-stack needs DATABASE_URL in the environment (a Postgres server that allows CREATE DATABASE)")?;
    if let Some(given) = &args.database_url
        && *given != env_url
    {
        bail!(
            "--start-stack creates its database on DATABASE_URL from the environment; pass the server there, not with --database-url"
        );
    }
    let binary = match std::env::var_os("REACTIVATION_BIN") {
        Some(b) => std::path::PathBuf::from(b),
        None => {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/reactivation")
        }
    };
    if !binary.exists() {
        bail!(
            "{} is missing: build it first (SQLX_OFFLINE=true cargo build [--release] -p reactivation) or set REACTIVATION_BIN",
            binary.display()
        );
    }
    eprintln!(
        "starting the stack ({}: separate `serve` processes, fresh database; the simulator on its own) …",
        binary.display()
    );
    let sim = SimDatabase {
        admin_url: env_url.clone(),
        name: format!("bench_sim_{}", uuid::Uuid::new_v4().simple()),
    };
    let admin = sqlx::PgPool::connect(&env_url).await?;
    sqlx::query(&format!("CREATE DATABASE {}", sim.name))
        .execute(&admin)
        .await?;
    admin.close().await;
    // `serve` checks the product's schema at start (demo accounts), whichever service.
    let sim_url = system_tests::with_database(&env_url, &sim.name);
    let sim_pool = sqlx::PgPool::connect(&sim_url).await?;
    case_store::MIGRATOR.run(&sim_pool).await?;
    sim_pool.close().await;
    let mut options = StackOptions::default();
    options
        .service_env
        .push(("carrier-sim", "DATABASE_URL".into(), sim_url));
    options.env.push((
        "REACTIVATION_MESSAGE_WINDOW_SECONDS".into(),
        args.message_window.to_string(),
    ));
    if let Some(n) = args.db_connections {
        options
            .env
            .push(("REACTIVATION_DB_MAX_CONNECTIONS".into(), n.to_string()));
    }
    // Per service, so that they override the harness's own per-service settings too
    // (the gateway's REACTIVATION_IDENTITY_URL, say).
    for service in system_tests::ALL_SERVICES {
        options.service_env.extend(
            args.service_env
                .iter()
                .map(|(k, v)| (*service, k.clone(), v.clone())),
        );
    }
    // The harness panics on failure; keep that inside a task so the bench can report it.
    let stack = tokio::spawn(Stack::start_with(options))
        .await
        .map_err(|e| {
            let why = e.try_into_panic().ok().and_then(|p| {
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            });
            anyhow!(
                "the stack did not start: {}",
                why.unwrap_or_else(|| "unknown".into())
            )
        })?;
    Ok(Started { stack, _sim: sim })
}

/// The histograms the bench reads from each `/metrics` page.
const HISTOGRAMS: [&str; 2] = ["handoff_latency_seconds", "http_request_duration_seconds"];

/// Per page, per histogram name, the series by label set.
type Scrape = Vec<[BTreeMap<String, Histogram>; 2]>;

async fn scrape_all(http: &Client, target: &Target) -> Scrape {
    let mut pages = Vec::new();
    for (service, url) in &target.metrics {
        match promtext::scrape(http, url).await {
            Ok(text) => pages.push(HISTOGRAMS.map(|name| promtext::parse_histograms(&text, name))),
            Err(e) => {
                eprintln!("warning: cannot read {service} metrics at {url}: {e}");
                pages.push(Default::default());
            }
        }
    }
    pages
}

/// Everything a run measured.
#[derive(Debug, Default)]
struct Measured {
    registration: Vec<Duration>,
    registration_window: Duration,
    records: Vec<JourneyRecord>,
    failures: Vec<JourneyFailure>,
    journey_window: Duration,
    create_window: Duration,
    creates: Vec<Duration>,
    polls: u64,
    stages: Option<Result<StageReport, String>>,
    handoff: Vec<(String, String, Histogram)>,
    requests: Vec<(String, String, Histogram)>,
    create_only: Option<(Vec<Duration>, Duration, usize, usize)>,
    baseline: Option<Result<BaselineResult, String>>,
}

async fn run(args: Args) -> anyhow::Result<u8> {
    let run_started = Instant::now();
    let load_before = load_average();
    let stack = if args.start_stack {
        Some(start_stack(&args).await?)
    } else {
        None
    };
    let target = match &stack {
        Some(Started { stack, .. }) => Target {
            gateway: stack.url("gateway").to_owned(),
            carrier: stack.url("carrier-sim").to_owned(),
            events_db: Some(stack.database_url.clone()),
            admin_db: std::env::var("DATABASE_URL").ok(),
            metrics: ["gateway", "identity", "carrier-sim", "risk", "provisioning"]
                .iter()
                .map(|s| (s.to_string(), format!("{}/metrics", stack.url(s))))
                .collect(),
            describe: format!(
                "started by the bench: separate `reactivation serve` processes, fresh database, simulator on its own database, {} connections per service",
                args.db_connections.unwrap_or(5)
            ),
        },
        None => Target {
            gateway: args.gateway.trim_end_matches('/').to_owned(),
            carrier: args.carrier.trim_end_matches('/').to_owned(),
            events_db: args.database_url.clone(),
            admin_db: args.database_url.clone(),
            metrics: args
                .metrics_urls
                .iter()
                .map(|u| {
                    let short = u
                        .trim_start_matches("http://")
                        .trim_start_matches("https://")
                        .trim_end_matches("/metrics");
                    (short.to_owned(), u.clone())
                })
                .collect(),
            describe: "already running".into(),
        },
    };
    let c = args.concurrency as usize;
    let http = Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(c.max(64))
        .build()?;
    journey::ready(&http, &target.gateway)
        .await
        .map_err(|e| anyhow!("the gateway is not ready: {e}"))?;
    journey::ready(&http, &target.carrier)
        .await
        .map_err(|e| anyhow!("the carrier simulator is not ready: {e}"))?;

    let code = match (&args.command, args.rate) {
        (Some(Command::Goals(g)), _) => run_goals(&args, g, &target, &http).await?,
        (None, Some(rate)) => run_rated(&args, rate, &target, &http).await?,
        (None, None) => {
            if args.history > 0 {
                let env = goals_env(&args, &target, &http).await?;
                goals::seed_history(&env, 0, args.history).await?;
            }
            run_closed(&args, &target, &http, &load_before, run_started).await?
        }
    };
    drop(stack);
    Ok(code)
}

/// What the open-loop modes need, from the target.
async fn goals_env(args: &Args, target: &Target, http: &Client) -> anyhow::Result<goals::Env> {
    let url = target
        .events_db
        .as_ref()
        .context("this mode needs the stack's database (--database-url, or --start-stack)")?;
    let product = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .context("connecting to the stack's database")?;
    Ok(goals::Env {
        http: http.clone(),
        gateway: target.gateway.clone(),
        carrier: target.carrier.clone(),
        product,
        admin_url: target
            .admin_db
            .clone()
            .context("the raw-SQL baseline needs DATABASE_URL")?,
        concurrency: args.concurrency as usize,
        max_in_flight: args.max_in_flight,
        settle_timeout: Duration::from_secs(args.timeout_secs),
        tag_base: run_tag(),
    })
}

fn header(title: &str, args: &Args, target: &Target) {
    println!();
    println!("== reactivation bench: {title} ==");
    println!(
        "{}",
        kv(
            "machine",
            format!(
                "{} CPUs; load average (1 min) now {}",
                cpus(),
                load_average()
            )
        )
    );
    println!("{}", kv("stack", &target.describe));
    println!(
        "{}",
        kv(
            "concurrency (closed loop) / baseline connections",
            args.concurrency
        )
    );
}

/// `--rate R --duration S`: create capacity against the baseline, then create and the
/// verify → reactivated journey at R/s.
async fn run_rated(args: &Args, rate: f64, target: &Target, http: &Client) -> anyhow::Result<u8> {
    if !(rate.is_finite() && rate > 0.0) {
        bail!("--rate must be a positive number of arrivals per second");
    }
    let env = goals_env(args, target, http).await?;
    let duration = Duration::from_secs(args.duration);
    header(
        &format!("open loop at {rate}/s for {} s", args.duration),
        args,
        target,
    );
    if args.history > 0 {
        goals::seed_history(&env, 0, args.history).await?;
    }
    let capacity = goals::create_capacity(&env, 0, args.cases as usize, false).await?;
    goals::print_capacity(&capacity, env.concurrency);
    let create = goals::create_at_rate(&env, 1, rate, duration).await?;
    goals::print_create_at_rate(&format!("create at {rate}/s offered"), &create);
    let journey = goals::journey_at_rate(&env, 2, rate, duration, true).await?;
    goals::print_journey_at_rate(
        &format!("verify → reactivated at {rate}/s offered"),
        &journey,
    );
    env.product.close().await;
    Ok(
        if journey.errors > 0 || !journey.settled || !journey.times.not_reactivated.is_empty() {
            1
        } else {
            0
        },
    )
}

/// `goals`: every figure of the goal table, then the table.
async fn run_goals(
    args: &Args,
    g: &GoalArgs,
    target: &Target,
    http: &Client,
) -> anyhow::Result<u8> {
    if g.history_large < g.history_small {
        bail!("--history-large must be at least --history-small");
    }
    let env = goals_env(args, target, http).await?;
    let duration = Duration::from_secs(args.duration);
    header("issue 12 goal figures", args, target);
    goals::seed_history(&env, 0, g.history_small).await?;

    let capacity = goals::create_capacity(&env, 0, args.cases as usize, true).await?;
    goals::print_capacity(&capacity, env.concurrency);

    let mut journeys = Vec::new();
    let mut tx_per_journey = None;
    for (k, rate) in (1u16..).zip(&g.journey_rates) {
        let count = k == 1;
        let j = goals::journey_at_rate(&env, k, *rate, duration, count).await?;
        goals::print_journey_at_rate(&format!("verify → reactivated at {rate}/s offered"), &j);
        if count {
            tx_per_journey = j.tx_per_journey;
        }
        journeys.push((*rate, j));
    }

    let hr = g.history_rate;
    let rounds = g.history_rounds;
    let small =
        goals::HistoryRounds::measure(&env, 20, hr, duration, rounds, g.history_small).await?;
    goals::seed_history(&env, g.history_small, g.history_large).await?;
    let large =
        goals::HistoryRounds::measure(&env, 60, hr, duration, rounds, g.history_large).await?;
    env.product.close().await;

    let figures = goals::GoalFigures {
        capacity,
        journeys,
        small,
        large,
        history: (g.history_small, g.history_large),
        tx_per_journey,
    };
    println!();
    println!(
        "goal table ({} CPUs, concurrency {}, {} s per open-loop figure):",
        cpus(),
        env.concurrency,
        args.duration
    );
    println!();
    print!("{}", goals::goal_table(&figures));
    Ok(0)
}

/// The closed-loop journeys (the default mode).
async fn run_closed(
    args: &Args,
    target: &Target,
    http: &Client,
    load_before: &str,
    run_started: Instant,
) -> anyhow::Result<u8> {
    let (n, c) = (args.cases as usize, args.concurrency as usize);
    let http = http.clone();
    let tag = run_tag();
    let mut m = Measured::default();

    // 1. Fresh subscribers at the simulator.
    eprintln!("registering {n} subscribers at the simulator (run tag {tag:04}) …");
    let subs: Arc<Vec<BenchSubscriber>> = Arc::new(
        (0..args.cases)
            .map(|i| BenchSubscriber::new(tag, Series::Journey, i))
            .collect(),
    );
    let started = Instant::now();
    let registered = {
        let (http, carrier, subs) = (http.clone(), target.carrier.clone(), subs.clone());
        run_indexed(n, c, move |i| {
            let (http, carrier, subs) = (http.clone(), carrier.clone(), subs.clone());
            async move { journey::register(&http, &carrier, &subs[i]).await }
        })
        .await
    };
    m.registration_window = started.elapsed();
    if let Some(Err(e)) = registered.iter().find(|r| r.is_err()) {
        bail!("registering subscribers failed: {e}");
    }
    m.registration = registered.into_iter().filter_map(Result::ok).collect();

    // 2. The journeys, with the workers' hand-off histograms read before and after.
    let before = scrape_all(&http, target).await;
    eprintln!("running {n} journeys at concurrency {c} …");
    let settings = Arc::new(JourneySettings {
        poll: Duration::from_millis(args.poll_ms),
        timeout: Duration::from_secs(args.timeout_secs),
    });
    let started = Instant::now();
    let results = {
        let (http, gateway, subs) = (http.clone(), target.gateway.clone(), subs.clone());
        run_indexed(n, c, move |i| {
            let (http, gateway, subs, settings) = (
                http.clone(),
                gateway.clone(),
                subs.clone(),
                settings.clone(),
            );
            async move { journey::journey(&http, &gateway, i, &subs[i], &settings).await }
        })
        .await
    };
    m.journey_window = started.elapsed();
    let after = scrape_all(&http, target).await;
    for (((service, _), b), a) in target.metrics.iter().zip(&before).zip(&after) {
        for (labels, h) in &a[0] {
            m.handoff
                .push((service.clone(), labels.clone(), h.minus(b[0].get(labels))));
        }
        for (labels, h) in &a[1] {
            let d = h.minus(b[1].get(labels));
            if d.count > 0.0 && !labels.contains("route=/metrics") {
                m.requests.push((service.clone(), labels.clone(), d));
            }
        }
    }
    let mut last_create = Duration::ZERO;
    for r in results {
        match r {
            Ok(rec) => {
                m.creates.push(rec.create_latency());
                m.polls += u64::from(rec.polls);
                last_create = last_create.max(rec.created - started);
                m.records.push(rec);
            }
            Err(f) => {
                m.polls += u64::from(f.polls);
                if let Some(created) = f.created {
                    m.creates.push(created - f.submitted);
                    last_create = last_create.max(created - started);
                }
                m.failures.push(f);
            }
        }
    }
    m.create_window = last_create;

    // 3. Hand-off times per stage from the event log.
    if let Some(url) = &target.events_db {
        let ids: Vec<uuid::Uuid> = m.records.iter().map(|r| r.case_id).collect();
        let read = async {
            let pool = sqlx::PgPool::connect(url).await?;
            let report = events::stage_latencies(&pool, &ids).await;
            pool.close().await;
            report
        };
        m.stages = Some(read.await.map_err(|e| format!("{e:#}")));
    }

    // 4. Create-only: the create call alone at the same concurrency (cases cancelled after).
    if !args.skip_create_only {
        eprintln!("create-only phase: {n} cases at concurrency {c} …");
        let started = Instant::now();
        let created: Vec<Result<Created, String>> = {
            let (http, gateway) = (http.clone(), target.gateway.clone());
            run_indexed(n, c, move |i| {
                let (http, gateway) = (http.clone(), gateway.clone());
                async move {
                    let index = u32::try_from(i).unwrap_or(u32::MAX);
                    let s = BenchSubscriber::new(tag, Series::CreateOnly, index);
                    journey::create_only(&http, &gateway, &s).await
                }
            })
            .await
        };
        let window = created
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|r| r.answered - started)
            .max()
            .unwrap_or_default();
        let ok: Vec<Created> = created.into_iter().filter_map(Result::ok).collect();
        let failed = n - ok.len();
        let latencies = ok.iter().map(|r| r.answered - r.sent).collect();
        let ok = Arc::new(ok);
        let cancelled = {
            let (http, gateway, ok2) = (http.clone(), target.gateway.clone(), ok.clone());
            run_indexed(ok.len(), c, move |i| {
                let (http, gateway, ok) = (http.clone(), gateway.clone(), ok2.clone());
                async move { journey::cancel(&http, &gateway, ok[i].case_id, &ok[i].token).await }
            })
            .await
        };
        let cancel_failed = cancelled.iter().filter(|r| r.is_err()).count();
        m.create_only = Some((latencies, window, failed, cancel_failed));
    }

    // 5. The raw-SQL baseline.
    if !args.skip_baseline {
        if let Some(admin) = &target.admin_db {
            eprintln!("raw-SQL baseline: {n} transactions at concurrency {c} …");
            m.baseline = Some(
                baseline::run(admin, n, c, tag)
                    .await
                    .map_err(|e| format!("{e:#}")),
            );
        } else {
            eprintln!("warning: no --database-url/DATABASE_URL: raw-SQL baseline skipped");
        }
    }

    Ok(print_report(
        args,
        target,
        &m,
        load_before,
        run_started.elapsed(),
    ))
}

/// `NAME=VALUE` of `--service-env`: a `REACTIVATION_` variable (the services read no
/// other, and `DATABASE_URL` is the bench's to set).
fn parse_service_env(raw: &str) -> Result<(String, String), String> {
    let (name, value) = raw
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=VALUE, got `{raw}`"))?;
    let valid = name.strip_prefix("REACTIVATION_").is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    });
    if !valid {
        return Err(format!(
            "`{name}` is not a REACTIVATION_* variable name (upper case, digits, _)"
        ));
    }
    Ok((name.to_owned(), value.to_owned()))
}

/// `k=v,k=v` → `v v`.
fn compact(labels: &str) -> String {
    labels
        .split(',')
        .map(|kv| kv.split_once('=').map_or(kv, |(_, v)| v))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A table of histogram deltas: count, mean and the bucket bounds of p50 and p95.
fn print_histograms(title: &str, rows: &[(String, String, Histogram)]) {
    if rows.is_empty() {
        return;
    }
    let labels: Vec<String> = rows
        .iter()
        .map(|(service, labels, _)| format!("{service} {}", compact(labels)))
        .collect();
    let w = labels
        .iter()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(0)
        .max(44);
    println!();
    println!(
        "{title:<w2$} {:>6} {:>9} {:>9} {:>9}",
        "n",
        "mean ms",
        "p50<= ms",
        "p95<= ms",
        w2 = w + 2
    );
    for (label, (_, _, h)) in labels.iter().zip(rows) {
        let bound = |q| {
            h.quantile_bound(q)
                .map_or("-".into(), |b| format!("{:.1}", b * 1000.0))
        };
        println!(
            "  {label:<w$} {:>6} {:>9} {:>9} {:>9}",
            h.count,
            h.mean()
                .map_or("-".into(), |v| format!("{:.1}", v * 1000.0)),
            bound(0.5),
            bound(0.95)
        );
    }
}

/// Prints the report; returns the exit code (0 clean, 1 a journey failed, 2 a phase failed).
fn print_report(
    args: &Args,
    target: &Target,
    m: &Measured,
    load_before: &str,
    total: Duration,
) -> u8 {
    let (n, c) = (args.cases as usize, args.concurrency as usize);
    println!();
    println!("== reactivation bench: {n} clean journeys at concurrency {c} ==");
    println!(
        "{}",
        kv(
            "machine",
            format!(
                "{} CPUs; load average (1 min) {load_before} at start, {} at end",
                cpus(),
                load_average()
            )
        )
    );
    println!("{}", kv("stack", &target.describe));
    println!(
        "{}",
        kv(
            "gateway / carrier",
            format!("{} / {}", target.gateway, target.carrier)
        )
    );
    println!(
        "{}",
        kv(
            "status poll interval / journey timeout",
            format!("{} ms / {} s", args.poll_ms, args.timeout_secs)
        )
    );
    println!(
        "{}",
        kv(
            "registration at the simulator",
            format!(
                "{} subscribers in {:.2} s ({:.1}/s, argon2id hash each)",
                m.registration.len(),
                m.registration_window.as_secs_f64(),
                rate(m.registration.len(), m.registration_window)
            )
        )
    );

    println!();
    println!("journeys");
    let timed_out = m
        .failures
        .iter()
        .filter(|f| f.step == journey::Step::Timeout)
        .count();
    println!(
        "{}",
        kv(
            "reactivated",
            format!(
                "{} / {n} (failed {}, of which timed out {timed_out})",
                m.records.len(),
                m.failures.len()
            )
        )
    );
    println!(
        "{}",
        kv(
            "wall time (journey phase)",
            format!("{:.2} s", m.journey_window.as_secs_f64())
        )
    );
    println!(
        "{}",
        kv(
            "submissions/s (create calls)",
            format!(
                "{:.1}  ({} creates answered by {:.2} s into the phase)",
                rate(m.creates.len(), m.create_window),
                m.creates.len(),
                m.create_window.as_secs_f64()
            )
        )
    );
    println!(
        "{}",
        kv(
            "journeys/s",
            format!("{:.1}", rate(m.records.len(), m.journey_window))
        )
    );
    println!(
        "{}",
        kv(
            "status polls (GET /v1/cases/{id})",
            format!(
                "{} ({:.0}/s)",
                m.polls,
                rate(m.polls as usize, m.journey_window)
            )
        )
    );

    println!();
    println!("{}", latency_header("latency (client clock)"));
    println!("{}", latency_row("POST /v1/cases", &m.creates));
    let verify: Vec<Duration> = m
        .records
        .iter()
        .map(JourneyRecord::verify_latency)
        .collect();
    println!(
        "{}",
        latency_row("POST /v1/cases/{id}/verifications", &verify)
    );
    let e2e: Vec<Duration> = m
        .records
        .iter()
        .map(JourneyRecord::submit_to_reactivated)
        .collect();
    println!(
        "{}",
        latency_row("submit -> reactivated seen by a poll", &e2e)
    );

    match &m.stages {
        Some(Ok(stages)) => {
            println!();
            println!(
                "{}",
                latency_header("hand-offs (case_events.at, server clock)")
            );
            println!(
                "{}",
                latency_row("opened -> reactivated", &stages.opened_to_reactivated)
            );
            for stage in &stages.order {
                let who = match stage.as_str() {
                    "awaiting_identity" => "customer + verify".to_owned(),
                    _ => stages.main_mover(stage).unwrap_or("?").to_owned(),
                };
                println!(
                    "{}",
                    latency_row(
                        &format!("in {stage} ({who})"),
                        &stages.stages[stage].samples
                    )
                );
            }
            for (path, count) in &stages.paths {
                println!("{}", kv("event path", format!("{path} x{count}")));
            }
        }
        Some(Err(e)) => println!("\nhand-offs: cannot read case_events: {e}"),
        None => println!("\nhand-offs: skipped (no --database-url)"),
    }

    print_histograms(
        "handoff_latency_seconds (commit -> first claim)",
        &m.handoff,
    );
    print_histograms("server time per request (journey phase)", &m.requests);

    let http_mix = summarize(&m.creates);
    let mix_rate = rate(m.creates.len(), m.create_window);
    let mut only_rate = None;
    let mut only_p50 = None;
    if let Some((latencies, window, failed, cancel_failed)) = &m.create_only {
        println!();
        println!(
            "{}",
            latency_header("create-only phase (POST /v1/cases alone)")
        );
        println!("{}", latency_row("POST /v1/cases", latencies));
        only_rate = Some(rate(latencies.len(), *window));
        only_p50 = summarize(latencies).map(|s| s.p50);
        println!(
            "{}",
            kv(
                "creates/s",
                format!(
                    "{:.1}  (failed {failed}; cancelled afterwards, {cancel_failed} cancel errors)",
                    only_rate.unwrap_or_default()
                )
            )
        );
    }

    let mut raw_rate = None;
    let mut raw_p50 = None;
    let mut baseline_ok = true;
    match &m.baseline {
        Some(Ok(b)) => {
            println!();
            println!(
                "{}",
                latency_header("raw SQL baseline (case row + event row per transaction)")
            );
            println!("{}", latency_row("transaction", &b.transactions));
            raw_rate = Some(rate(b.transactions.len(), b.window));
            raw_p50 = summarize(&b.transactions).map(|s| s.p50);
            println!(
                "{}",
                kv(
                    "inserts/s (cases)",
                    format!(
                        "{:.1}  ({} connections; scratch database {} dropped; failed {})",
                        raw_rate.unwrap_or_default(),
                        c,
                        b.database,
                        b.failures
                    )
                )
            );
            if let Some(e) = &b.first_error {
                println!("{}", kv("first error", e));
                baseline_ok = false;
            }
        }
        Some(Err(e)) => {
            println!("\nraw SQL baseline failed: {e}");
            baseline_ok = false;
        }
        None => println!("\nraw SQL baseline: skipped"),
    }

    if let Some(raw) = raw_rate.filter(|r| *r > 0.0) {
        println!();
        println!(
            "{:<46} {:>12} {:>9} {:>14}",
            format!("comparison at concurrency {c}"),
            "per second",
            "p50 ms",
            "ratio HTTP/raw"
        );
        let line = |label: &str, per_s: f64, p50: Option<Duration>| {
            println!(
                "  {label:<44} {per_s:>12.1} {:>9} {:>14}",
                p50.map_or("-".into(), ms),
                format!("{:.3}", per_s / raw)
            );
        };
        line(
            "HTTP create, within the journey mix",
            mix_rate,
            http_mix.map(|s| s.p50),
        );
        if let Some(r) = only_rate {
            line("HTTP create, create-only phase", r, only_p50);
        }
        line("raw SQL transaction", raw, raw_p50);
    }

    if !m.failures.is_empty() {
        println!();
        let shown = if m.failures.len() > 10 {
            ", the first 10 shown"
        } else {
            ""
        };
        println!("failed journeys ({}{shown}):", m.failures.len());
        for f in m.failures.iter().take(10) {
            println!(
                "  #{} case {} at {:?}: {}",
                f.index,
                f.case_id.map_or("-".into(), |id| id.to_string()),
                f.step,
                f.detail
            );
        }
    }
    println!();
    println!(
        "{}",
        kv("total bench time", format!("{:.1} s", total.as_secs_f64()))
    );

    let stages_ok = !matches!(m.stages, Some(Err(_)));
    if !m.failures.is_empty() {
        1
    } else if !(stages_ok && baseline_ok) {
        eprintln!("bench: a measurement phase failed (see the report)");
        2
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_env_takes_only_reactivation_variables() {
        assert_eq!(
            parse_service_env("REACTIVATION_FOLLOW_GATHER_MS=0"),
            Ok(("REACTIVATION_FOLLOW_GATHER_MS".into(), "0".into()))
        );
        assert_eq!(
            parse_service_env("REACTIVATION_LOG=info,sqlx=warn"),
            Ok(("REACTIVATION_LOG".into(), "info,sqlx=warn".into()))
        );
        for bad in [
            "REACTIVATION_FOLLOW_GATHER_MS",
            "DATABASE_URL=postgres://elsewhere",
            "REACTIVATION_=1",
            "reactivation_log=debug",
            "REACTIVATION_A B=1",
        ] {
            assert!(parse_service_env(bad).is_err(), "{bad}");
        }
    }
}
