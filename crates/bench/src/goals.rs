//! The figures of issue 12's goal table, measured one after another against one stack,
//! and the table itself. Also the building blocks of `--rate R --duration S`.
//!
//! Each figure prints the one-minute load average (`/proc/loadavg`) when it starts and
//! when it ends. Every figure uses its own block of numbers (its own run tag), so no
//! figure's cases stand in the way of another's.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use reqwest::Client;
use sqlx::PgPool;

use crate::{
    baseline::{self, BaselineResult},
    cpu, events,
    fixtures::{BenchSubscriber, Series},
    history,
    journey::{self, Created, run_indexed},
    rated::{self, Arrivals, JourneyTimes, RatedCreates},
    report::{kv, latency_header, latency_row, load_average, ms},
    schedule::Schedule,
    stats::{Summary, rate, summarize},
    txcount,
};

/// Where the figures are measured.
#[derive(Debug, Clone)]
pub struct Env {
    /// HTTP client.
    pub http: Client,
    /// Gateway base URL.
    pub gateway: String,
    /// Simulator base URL.
    pub carrier: String,
    /// The product's database (history seeding, state reads, event log, counters).
    pub product: PgPool,
    /// A server connection that may create the baseline's scratch database.
    pub admin_url: String,
    /// Requests in flight (closed-loop phases) and connections of the baseline.
    pub concurrency: usize,
    /// Open-loop cap on outstanding requests; starts beyond it are dropped.
    pub max_in_flight: usize,
    /// How long journeys may take to settle after the last verification.
    pub settle_timeout: Duration,
    /// First run tag; figure k uses `tag_base + k`.
    pub tag_base: u16,
}

impl Env {
    fn tag(&self, figure: u16) -> u16 {
        (self.tag_base + figure) % 10_000
    }
}

/// Load average at the start and end of a figure.
#[derive(Debug, Clone, Default)]
pub struct Load {
    /// At the start.
    pub start: String,
    /// At the end.
    pub end: String,
}

impl Load {
    fn begin(title: &str) -> Self {
        let start = load_average();
        eprintln!("-- {title} (load average {start}) …");
        Self {
            start,
            end: String::new(),
        }
    }

    fn end(mut self) -> Self {
        self.end = load_average();
        self
    }

    fn show(&self) -> String {
        format!("{} → {}", self.start, self.end)
    }
}

/// A transaction counter over one measured piece of work.
struct TxWindow {
    before: i64,
    idle_per_s: f64,
    started: Instant,
}

impl TxWindow {
    /// Waits for the stack's counters to settle, measures the idle background for 5 s.
    async fn open(pool: &PgPool) -> anyhow::Result<Self> {
        // The earlier stages' messages (held for the message window) go first.
        rated::drain_outbox(pool, None, Duration::from_secs(120)).await?;
        tokio::time::sleep(txcount::FLUSH_WAIT).await;
        let a = txcount::transactions(pool).await?;
        let idle = Duration::from_secs(5);
        tokio::time::sleep(idle).await;
        let before = txcount::transactions(pool).await?;
        // Minus the reading itself.
        let idle_per_s = ((before - a - 1).max(0)) as f64 / idle.as_secs_f64();
        Ok(Self {
            before,
            idle_per_s,
            started: Instant::now(),
        })
    }

    /// Transactions per unit after the stack went idle; `own` = the bench's statements.
    async fn close(self, pool: &PgPool, own: u64, units: usize) -> anyhow::Result<f64> {
        let window = self.started.elapsed() + txcount::FLUSH_WAIT;
        tokio::time::sleep(txcount::FLUSH_WAIT).await;
        let after = txcount::transactions(pool).await?;
        // The opening reading is in the delta too.
        Ok(txcount::per_unit(
            after - self.before,
            own + 1,
            self.idle_per_s,
            window,
            units,
        ))
    }
}

/// Seeds history up to `to` cases (from `from`), reporting the time taken.
pub async fn seed_history(env: &Env, from: u64, to: u64) -> anyhow::Result<history::Seeded> {
    let load = Load::begin(&format!("seeding history: cases {from}..{to}"));
    let seeded = history::seed(
        &env.product,
        from,
        to,
        to,
        &format!("bench{}", env.tag_base),
    )
    .await
    .context("seeding history")?;
    let load = load.end();
    println!(
        "{}",
        kv(
            &format!("history {from}..{to}"),
            format!(
                "{} cases in {:.1} s + VACUUM (ANALYZE) {:.1} s; load {}",
                seeded.cases,
                seeded.insert_time.as_secs_f64(),
                seeded.vacuum_time.as_secs_f64(),
                load.show()
            )
        )
    );
    Ok(seeded)
}

/// Before a figure that is compared across history sizes: writes out the dirty pages of
/// what came before (`CHECKPOINT`: the seeding's millions of rows, the earlier
/// stages' writes) and waits, at most `limit`, until no autovacuum worker runs, so
/// that the figure does not share the disk and the CPU with the clean-up of an
/// earlier stage. Prints what it waited for. A server that refuses `CHECKPOINT` (a
/// role without `pg_checkpoint`) is only warned about.
pub async fn quiesce(env: &Env, limit: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    if let Err(e) = sqlx::query("CHECKPOINT").execute(&env.product).await {
        eprintln!("   warning: CHECKPOINT refused ({e}); measuring without it");
    }
    let checkpoint = started.elapsed();
    let mut seen = 0i64;
    let quiet = loop {
        let running: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'",
        )
        .fetch_one(&env.product)
        .await?;
        seen = seen.max(running);
        if running == 0 {
            break true;
        }
        if started.elapsed() >= limit {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!(
        "{}",
        kv(
            "quiesce",
            format!(
                "CHECKPOINT {:.1} s; autovacuum workers at most {seen}, {} after {:.1} s; load {}",
                checkpoint.as_secs_f64(),
                if quiet { "none left" } else { "still running" },
                started.elapsed().as_secs_f64(),
                load_average()
            )
        )
    );
    Ok(())
}

/// The history comparison at one history size: creates and then verifications at the
/// history rate, `rounds` times, each round after [`quiesce`]. The figure is the median
/// of the rounds' p99s (one p99 of 1,000 samples is a single tail event; the median of
/// three is not moved by one noisy round).
#[derive(Debug, Default)]
pub struct HistoryRounds {
    /// Each round's creates and journeys.
    pub rounds: Vec<(CreateAtRate, JourneyAtRate)>,
}

impl HistoryRounds {
    /// Measures `rounds` rounds; round `k` uses figures `first + 2k` and `first + 2k + 1`.
    pub async fn measure(
        env: &Env,
        first: u16,
        rate: f64,
        duration: Duration,
        rounds: u16,
        history: u64,
    ) -> anyhow::Result<Self> {
        let mut out = Self::default();
        for k in 0..rounds {
            quiesce(env, Duration::from_secs(120)).await?;
            let create = create_at_rate(env, first + 2 * k, rate, duration).await?;
            print_create_at_rate(
                &format!("create at {rate}/s, history {history}, round {}", k + 1),
                &create,
            );
            let journey = journey_at_rate(env, first + 2 * k + 1, rate, duration, false).await?;
            print_journey_at_rate(
                &format!(
                    "verify → reactivated at {rate}/s, history {history}, round {}",
                    k + 1
                ),
                &journey,
            );
            out.rounds.push((create, journey));
        }
        Ok(out)
    }

    fn create_p99s(&self) -> Vec<Option<Duration>> {
        self.rounds.iter().map(|(c, _)| p99(&c.summary)).collect()
    }

    fn journey_p99s(&self) -> Vec<Option<Duration>> {
        self.rounds.iter().map(|(_, j)| p99(&j.summary)).collect()
    }

    fn loads(&self) -> String {
        self.rounds
            .iter()
            .map(|(c, j)| format!("{}, {}", c.load.show(), j.load.show()))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The median of the figures, `None` when any is missing (a round that measured
/// nothing is not left out silently).
fn median(values: &[Option<Duration>]) -> Option<Duration> {
    let mut known: Vec<Duration> = values.iter().copied().collect::<Option<_>>()?;
    known.sort();
    match known.len() {
        0 => None,
        n if n % 2 == 1 => Some(known[n / 2]),
        n => Some((known[n / 2 - 1] + known[n / 2]) / 2),
    }
}

fn list_ms(values: &[Option<Duration>]) -> String {
    values
        .iter()
        .map(|v| v.map_or("-".into(), ms))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Figure 1: case creation over HTTP at full speed against the raw-SQL baseline.
#[derive(Debug)]
pub struct CreateCapacity {
    /// Load average.
    pub load: Load,
    /// Creates/s, closed loop at the concurrency.
    pub http_rate: f64,
    /// Latencies of the creates.
    pub http: Option<Summary>,
    /// Failed creates.
    pub http_errors: usize,
    /// The baseline.
    pub raw: BaselineResult,
    /// Baseline transactions/s.
    pub raw_rate: f64,
    /// Product transactions per create.
    pub tx_per_create: Option<f64>,
    /// Cores used per process during the HTTP creates.
    pub cpu: Vec<(String, f64)>,
}

impl CreateCapacity {
    /// create rate ÷ baseline rate.
    pub fn ratio(&self) -> f64 {
        if self.raw_rate > 0.0 {
            self.http_rate / self.raw_rate
        } else {
            0.0
        }
    }
}

/// Runs the baseline's `n` transactions on as many connections, then creates `n`
/// cases closed-loop at the concurrency (and cancels them). The baseline goes first,
/// on a machine as quiet as the stack leaves it: after the creates, the stack is
/// still grading, following and cancelling them for seconds, which would slow the
/// baseline and flatter the ratio.
pub async fn create_capacity(
    env: &Env,
    figure: u16,
    n: usize,
    count_tx: bool,
) -> anyhow::Result<CreateCapacity> {
    let c = env.concurrency;
    let load = Load::begin(&format!(
        "create capacity: the raw-SQL baseline, then {n} creates at concurrency {c}"
    ));
    let tag = env.tag(figure);
    let raw = baseline::run(&env.admin_url, n, c, tag)
        .await
        .context("the raw-SQL baseline")?;
    anyhow::ensure!(
        raw.failures == 0,
        "the raw-SQL baseline failed: {}",
        raw.first_error.clone().unwrap_or_default()
    );
    let window = if count_tx {
        Some(TxWindow::open(&env.product).await?)
    } else {
        None
    };
    let cpu_before = cpu::sample(&env.product).await;
    let started = Instant::now();
    let results: Vec<Result<Created, String>> = {
        let (http, gateway) = (env.http.clone(), env.gateway.clone());
        run_indexed(n, c, move |i| {
            let (http, gateway) = (http.clone(), gateway.clone());
            async move {
                let s = BenchSubscriber::new(tag, Series::CreateOnly, index(i));
                journey::create_only(&http, &gateway, &s).await
            }
        })
        .await
    };
    let wall = started.elapsed();
    let cpu = cpu::usage(&cpu_before, &cpu::sample(&env.product).await);
    let ok: Vec<Created> = results.into_iter().filter_map(Result::ok).collect();
    let http_errors = n - ok.len();
    let latencies: Vec<Duration> = ok.iter().map(|r| r.answered - r.sent).collect();
    let tx_per_create = match window {
        Some(w) => Some(w.close(&env.product, 0, ok.len()).await?),
        None => None,
    };
    let cancel_errors = rated::cancel_all(&env.http, &env.gateway, ok, c).await;
    if cancel_errors > 0 {
        eprintln!("warning: {cancel_errors} create-capacity cases could not be cancelled");
    }
    let raw_rate = rate(raw.transactions.len(), raw.window);
    Ok(CreateCapacity {
        load: load.end(),
        http_rate: rate(latencies.len(), wall),
        http: summarize(&latencies),
        http_errors,
        raw,
        raw_rate,
        tx_per_create,
        cpu,
    })
}

/// A create stage at a fixed rate.
#[derive(Debug)]
pub struct CreateAtRate {
    /// Load average.
    pub load: Load,
    /// What was measured.
    pub run: RatedCreates,
    /// Latency figures.
    pub summary: Option<Summary>,
    /// Cores used per process during the stage.
    pub cpu: Vec<(String, f64)>,
}

/// `POST /v1/cases` at `rate` for `duration`, then cancels the cases.
pub async fn create_at_rate(
    env: &Env,
    figure: u16,
    rate: f64,
    duration: Duration,
) -> anyhow::Result<CreateAtRate> {
    let load = Load::begin(&format!(
        "create at {rate}/s for {} s",
        duration.as_secs_f64()
    ));
    let cpu_before = cpu::sample(&env.product).await;
    let mut run = rated::create_at_rate(
        &env.http,
        &env.gateway,
        env.tag(figure),
        Schedule::new(rate, duration),
        env.max_in_flight,
    )
    .await;
    let cpu = cpu::usage(&cpu_before, &cpu::sample(&env.product).await);
    let load = load.end();
    let created = std::mem::take(&mut run.created);
    let cancel_errors = rated::cancel_all(&env.http, &env.gateway, created, env.concurrency).await;
    if cancel_errors > 0 {
        eprintln!("warning: {cancel_errors} cases of the create stage could not be cancelled");
    }
    let summary = summarize(&run.latencies);
    Ok(CreateAtRate {
        load,
        run,
        summary,
        cpu,
    })
}

/// A verify → reactivated stage at a fixed rate.
#[derive(Debug)]
pub struct JourneyAtRate {
    /// Load average (verification phase only).
    pub load: Load,
    /// Preparation (registration, create, code sent) of the cases: count and time.
    pub prepared: (usize, Duration),
    /// How the verifications kept to the schedule.
    pub arrivals: Arrivals,
    /// Client-clock latency of the verification calls (scheduled start → answer).
    pub calls: Option<Summary>,
    /// Verifications not accepted.
    pub errors: usize,
    /// The first of those.
    pub first_error: Option<String>,
    /// Whether every accepted case settled before the timeout.
    pub settled: bool,
    /// The event log's view.
    pub times: JourneyTimes,
    /// verify → reactivated figures.
    pub summary: Option<Summary>,
    /// Product transactions per journey (create, code request, verification, workers).
    pub tx_per_journey: Option<f64>,
    /// Cores used per process from the first verification until the cases settled.
    pub cpu: Vec<(String, f64)>,
    /// Time in each state per case, from the same event rows (who holds the cases up).
    pub stages: events::StageReport,
}

/// Prepares `rate × duration` cases with their codes sent, sends the verifications at
/// `rate`, waits for the cases to settle and reads verify → reactivated from the log.
pub async fn journey_at_rate(
    env: &Env,
    figure: u16,
    rate: f64,
    duration: Duration,
    count_tx: bool,
) -> anyhow::Result<JourneyAtRate> {
    let schedule = Schedule::new(rate, duration);
    let tag = env.tag(figure);
    let window = if count_tx {
        Some(TxWindow::open(&env.product).await?)
    } else {
        None
    };
    eprintln!(
        "   preparing {} cases (register, open, code sent) at concurrency {} …",
        schedule.count, env.concurrency
    );
    let started = Instant::now();
    let ready = rated::prepare(
        &env.http,
        &env.gateway,
        &env.carrier,
        tag,
        schedule.count,
        env.concurrency,
    )
    .await?;
    let prepared = (ready.len(), started.elapsed());
    let load = Load::begin(&format!(
        "verify → reactivated at {rate}/s for {} s",
        duration.as_secs_f64()
    ));
    let cpu_before = cpu::sample(&env.product).await;
    let verifies = rated::verify_at_rate(
        &env.http,
        &env.gateway,
        Arc::new(ready),
        schedule,
        env.max_in_flight,
    )
    .await;
    let (reads, settled) = rated::settle(&env.product, &verifies.accepted, env.settle_timeout)
        .await
        .context("waiting for the journeys")?;
    let cpu = cpu::usage(&cpu_before, &cpu::sample(&env.product).await);
    let load = load.end();
    let tx_per_journey = match window {
        Some(w) => {
            // The journeys' messages (held for the message window) are part of them.
            let (drain_reads, drained) =
                rated::drain_outbox(&env.product, Some(&verifies.accepted), env.settle_timeout)
                    .await?;
            if !drained {
                eprintln!(
                    "   warning: messages of these journeys were still undelivered at the timeout"
                );
            }
            Some(
                w.close(&env.product, reads + drain_reads, verifies.accepted.len())
                    .await?,
            )
        }
        None => None,
    };
    let rows = events::read_rows(&env.product, &verifies.accepted)
        .await
        .context("reading case_events")?;
    let stages = events::analyse(rows.clone());
    let times = rated::journey_times(rows);
    let summary = summarize(&times.verify_to_reactivated);
    Ok(JourneyAtRate {
        load,
        prepared,
        arrivals: verifies.arrivals,
        calls: summarize(&verifies.call_latencies),
        errors: verifies.errors,
        first_error: verifies.first_error,
        settled,
        times,
        summary,
        tx_per_journey,
        cpu,
        stages,
    })
}

fn index(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

fn arrivals_line(a: &Arrivals) -> String {
    format!(
        "offered {:.0}/s, {} scheduled, {} started at {:.1}/s; late starts {} (max {} ms), dropped {}",
        a.offered,
        a.scheduled,
        a.started,
        a.achieved,
        a.late,
        ms(a.max_lateness),
        a.dropped
    )
}

/// Prints figure 1.
pub fn print_capacity(f: &CreateCapacity, c: usize) {
    println!();
    println!(
        "{}",
        latency_header(&format!("create capacity at concurrency {c}"))
    );
    if let Some(s) = f.http {
        println!("{}", summary_row("HTTP POST /v1/cases (closed loop)", &s));
    }
    if let Some(s) = summarize(&f.raw.transactions) {
        println!("{}", summary_row("raw SQL: case row + event row", &s));
    }
    println!(
        "{}",
        kv(
            "creates/s over HTTP",
            format!("{:.1} (failed {})", f.http_rate, f.http_errors)
        )
    );
    println!(
        "{}",
        kv(
            "raw SQL transactions/s",
            format!(
                "{:.1} ({c} connections, scratch database {})",
                f.raw_rate, f.raw.database
            )
        )
    );
    println!(
        "{}",
        kv(
            "create rate ÷ raw-SQL baseline",
            format!("{:.3}", f.ratio())
        )
    );
    if let Some(t) = f.tx_per_create {
        println!(
            "{}",
            kv("product transactions per create", format!("{t:.1}"))
        );
    }
    println!("{}", kv("CPU, cores (HTTP creates)", cpu::describe(&f.cpu)));
    println!("{}", kv("load average", f.load.show()));
}

/// A latency row from a summary.
pub fn summary_row(label: &str, s: &Summary) -> String {
    format!(
        "  {label:<44} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9}",
        s.count,
        ms(s.p50),
        ms(s.p90),
        ms(s.p95),
        ms(s.p99),
        ms(s.max)
    )
}

/// Prints a create stage at a fixed rate.
pub fn print_create_at_rate(label: &str, f: &CreateAtRate) {
    println!();
    println!("{}", latency_header(label));
    match &f.summary {
        Some(s) => println!(
            "{}",
            summary_row("POST /v1/cases (scheduled start → 201)", s)
        ),
        None => println!("{}", latency_row("POST /v1/cases", &[])),
    }
    println!("{}", kv("arrivals", arrivals_line(&f.run.arrivals)));
    println!(
        "{}",
        kv(
            "errors",
            format!(
                "{}{}",
                f.run.errors,
                f.run
                    .first_error
                    .as_ref()
                    .map_or(String::new(), |e| format!(" (first: {e})"))
            )
        )
    );
    println!("{}", kv("CPU, cores", cpu::describe(&f.cpu)));
    println!("{}", kv("load average", f.load.show()));
}

/// Prints a journey stage at a fixed rate.
pub fn print_journey_at_rate(label: &str, f: &JourneyAtRate) {
    println!();
    println!("{}", latency_header(label));
    match &f.summary {
        Some(s) => println!(
            "{}",
            summary_row("verify → reactivated (case_events.at)", s)
        ),
        None => println!(
            "{}",
            latency_row("verify → reactivated (case_events.at)", &[])
        ),
    }
    if let Some(s) = &f.calls {
        println!(
            "{}",
            summary_row("POST …/verifications (client, from schedule)", s)
        );
    }
    for stage in ["risk_assessment", "provisioning"] {
        if let Some(samples) = f.stages.stages.get(stage)
            && let Some(s) = summarize(&samples.samples)
        {
            let who = f.stages.main_mover(stage).unwrap_or("?");
            println!("{}", summary_row(&format!("  in {stage} ({who})"), &s));
        }
    }
    println!(
        "{}",
        kv(
            "prepared (not measured)",
            format!(
                "{} cases in {:.1} s",
                f.prepared.0,
                f.prepared.1.as_secs_f64()
            )
        )
    );
    println!("{}", kv("arrivals", arrivals_line(&f.arrivals)));
    let reactivated = f.times.verify_to_reactivated.len();
    let elsewhere: Vec<String> = f
        .times
        .not_reactivated
        .iter()
        .map(|(s, n)| format!("{s} ×{n}"))
        .collect();
    println!(
        "{}",
        kv(
            "outcome",
            format!(
                "{reactivated} reactivated; verification errors {}{}; elsewhere: {}{}",
                f.errors,
                f.first_error
                    .as_ref()
                    .map_or(String::new(), |e| format!(" (first: {e})")),
                if elsewhere.is_empty() {
                    "none".into()
                } else {
                    elsewhere.join(", ")
                },
                if f.settled {
                    ""
                } else {
                    "; NOT all settled before the timeout"
                }
            )
        )
    );
    println!(
        "{}",
        kv(
            "completed",
            format!(
                "{:.1} reactivations/s (first proof accepted → last reactivation: {:.1} s)",
                f.times.completion_rate(),
                f.times.span.as_secs_f64()
            )
        )
    );
    println!(
        "{}",
        kv("CPU, cores (until settled)", cpu::describe(&f.cpu))
    );
    if let Some(t) = f.tx_per_journey {
        println!(
            "{}",
            kv(
                "product transactions per journey",
                format!("{t:.1} (create, code request, verification, workers)")
            )
        );
    }
    println!("{}", kv("load average", f.load.show()));
}

/// Every figure of the goal table.
#[derive(Debug)]
pub struct GoalFigures {
    /// Create capacity against the baseline.
    pub capacity: CreateCapacity,
    /// Journeys at the two offered rates.
    pub journeys: Vec<(f64, JourneyAtRate)>,
    /// With the small history: creates and journeys at the history rate.
    pub small: HistoryRounds,
    /// With the large history.
    pub large: HistoryRounds,
    /// History sizes.
    pub history: (u64, u64),
    /// Transactions per journey (the first journey figure's).
    pub tx_per_journey: Option<f64>,
}

fn p99(s: &Option<Summary>) -> Option<Duration> {
    s.map(|s| s.p99)
}

fn ratio(a: Option<Duration>, b: Option<Duration>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if !b.is_zero() => format!("{:.2}", a.as_secs_f64() / b.as_secs_f64()),
        _ => "-".into(),
    }
}

/// The goal table, as markdown.
pub fn goal_table(g: &GoalFigures) -> String {
    let mut out = String::new();
    let (small, large) = g.history;
    out.push_str("| goal | measured | floor | goal | load average |\n|---|---|---|---|---|\n");
    out.push_str(&format!(
        "| create rate ÷ raw-SQL baseline | {:.2} ({:.0} ÷ {:.0} per s) | 0.5 | 0.65 | {} |\n",
        g.capacity.ratio(),
        g.capacity.http_rate,
        g.capacity.raw_rate,
        g.capacity.load.show()
    ));
    for (r, j) in &g.journeys {
        let figures = j.summary.map_or("-".into(), |s| {
            format!(
                "p50 {} ms, p99 {} ms ({} reactivated, verifications sent at {:.0}/s, completed at {:.0}/s, late {}, dropped {}, errors {})",
                ms(s.p50),
                ms(s.p99),
                s.count,
                j.arrivals.achieved,
                j.times.completion_rate(),
                j.arrivals.late,
                j.arrivals.dropped,
                j.errors
            )
        });
        out.push_str(&format!(
            "| verify→reactivated at {r:.0}/s offered | {figures} | p50 ≤ 10 ms, p99 ≤ 25 ms | same at 200/s | {} |\n",
            j.load.show()
        ));
    }
    let rows = [
        ("create", g.large.create_p99s(), g.small.create_p99s()),
        ("journey", g.large.journey_p99s(), g.small.journey_p99s()),
    ];
    for (what, l, s) in rows {
        out.push_str(&format!(
            "| {what} p99 with {large} finished cases ÷ with {small} (median of {} rounds) | {} ({} ms ÷ {} ms; rounds {} ÷ {}) | ≤ 1.5 | ≤ 1.2 | {} / {} |\n",
            l.len().max(s.len()),
            ratio(median(&l), median(&s)),
            median(&l).map_or("-".into(), ms),
            median(&s).map_or("-".into(), ms),
            list_ms(&l),
            list_ms(&s),
            g.small.loads(),
            g.large.loads()
        ));
    }
    out.push_str(&format!(
        "| the product's transactions per clean journey | {} | ≤ 25 | ≤ 15 | {} |\n",
        g.tx_per_journey.map_or("-".into(), |t| format!("{t:.1}")),
        g.journeys
            .first()
            .map_or("-".into(), |(_, j)| j.load.show())
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_of_p99s() {
        let ms = Duration::from_millis;
        assert_eq!(ratio(Some(ms(30)), Some(ms(20))), "1.50");
        assert_eq!(ratio(None, Some(ms(20))), "-");
        assert_eq!(ratio(Some(ms(1)), Some(Duration::ZERO)), "-");
    }

    #[test]
    fn the_median_of_rounds_ignores_one_tail_and_refuses_a_missing_round() {
        let ms = Duration::from_millis;
        assert_eq!(
            median(&[Some(ms(50)), Some(ms(93)), Some(ms(48))]),
            Some(ms(50))
        );
        assert_eq!(median(&[Some(ms(40)), Some(ms(60))]), Some(ms(50)));
        assert_eq!(median(&[Some(ms(40)), None, Some(ms(60))]), None);
        assert_eq!(median(&[]), None);
        assert_eq!(
            list_ms(&[Some(ms(40)), None]),
            format!("{}, -", crate::report::ms(ms(40)))
        );
    }
}
