//! Runs services in this process.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use carrier_adapter::{Carrier, HttpCarrier};
use data_protection::Keys;
use service_runtime::{
    Settings, Shutdown, db, http,
    worker::{Wakeups, WorkerSettings, run_case_worker, run_outbox_worker},
};
use sqlx::PgPool;
use tokio::task::JoinSet;

use crate::Service;

/// Everything the services of one process share.
pub struct Wiring {
    pub pool: PgPool,
    pub settings: Settings,
    pub shutdown: Shutdown,
    /// The process's one `LISTEN` connection for its worker loops (outside the
    /// pool), routing the wake-ups named in case changes.
    pub wakeups: Wakeups,
}

impl Wiring {
    /// The services of one process over `pool`.
    pub fn new(pool: PgPool, settings: Settings, shutdown: Shutdown) -> Self {
        Self {
            pool,
            settings,
            shutdown,
            wakeups: Wakeups::routed_through(case_store::CASE_CHANGED_CHANNEL),
        }
    }
}

impl Wiring {
    fn carrier(&self) -> anyhow::Result<Arc<dyn Carrier>> {
        let carrier = HttpCarrier::new(&self.settings.carrier_url, Duration::from_secs(5))
            .map_err(|e| anyhow::anyhow!("REACTIVATION_CARRIER_URL: {e}"))?;
        Ok(Arc::new(carrier))
    }

    fn keys(&self) -> anyhow::Result<Arc<Keys>> {
        let secret = self.settings.require_secret_key()?;
        let keys = Keys::from_list(secret, &self.settings.old_secret_keys)
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.settings.secret_key_variable))?;
        Ok(Arc::new(keys))
    }

    /// Keeps the `reactivation_cases` gauges of this process's `/metrics` fresh (the
    /// runtime knows no tables: the binary hands it the store's counts).
    pub fn start_case_gauges(&self, tasks: &mut JoinSet<anyhow::Result<()>>) {
        let (pool, shutdown) = (self.pool.clone(), self.shutdown.clone());
        tasks.spawn(async move {
            case_workflows::gauges::refresh_every(
                pool,
                case_workflows::gauges::REFRESH_EVERY,
                shutdown.wait(),
            )
            .await;
            Ok(())
        });
    }

    /// Starts `service` on `tasks`.
    pub async fn start(
        &self,
        service: Service,
        tasks: &mut JoinSet<anyhow::Result<()>>,
    ) -> anyhow::Result<()> {
        let (pool, settings, shutdown) = (
            self.pool.clone(),
            self.settings.clone(),
            self.shutdown.clone(),
        );
        let workers = WorkerSettings::from(&settings).woken_by(self.wakeups.clone());
        match service {
            Service::Gateway => {
                // The ETA and queue due times read the stage SLAs: refuse a malformed
                // configuration at start.
                let sla = Arc::new(case_timers::TimersConfig::from_env()?.sla);
                let identity = Arc::new(
                    gateway::identity_client::HttpIdentity::new(&settings.identity_url)?
                        .with_token(
                            settings
                                .require_internal_tokens()?
                                .current()
                                .unwrap_or_default(),
                        )?,
                );
                let state = gateway::AppState {
                    pool,
                    keys: self.keys()?,
                    identity,
                    sla,
                    console: gateway::console::ConsoleConfig::from_lookup(|name| {
                        std::env::var(name).ok()
                    }),
                    live: gateway::live::LiveHub::default(),
                    webhooks: gateway::webhooks::WebhookConfig {
                        carrier_secrets: Arc::new(settings.carrier_webhook_secrets.clone()),
                        policy: webhooks::DestinationPolicy {
                            allow_private: settings.webhooks_allow_private,
                        },
                    },
                };
                let listener = http::bind(settings.gateway_addr).await?;
                tasks.spawn(gateway::run(
                    listener,
                    state,
                    settings.http_timeout,
                    shutdown,
                ));
            }
            Service::Identity => {
                let service = identity_verification::IdentityService::new(
                    pool.clone(),
                    self.carrier()?,
                    self.keys()?,
                );
                // The internal API behind the internal token; health and metrics open.
                let app = identity_verification::router(
                    service,
                    settings.require_internal_tokens()?.clone(),
                )
                .merge(http::ops_routes(pool));
                let listener = http::bind(settings.identity_addr).await?;
                tracing::info!(addr = %settings.identity_addr, "identity service listening");
                tasks.spawn(http::serve(
                    listener,
                    http::with_standard_layers(app, settings.http_timeout),
                    shutdown,
                ));
            }
            Service::Risk => {
                let step = Arc::new(risk_assessment::RiskStep::new(self.carrier()?));
                let listener = http::bind(settings.risk_addr).await?;
                tasks.spawn(http::serve(
                    listener,
                    http::with_standard_layers(
                        http::ops_routes(pool.clone()),
                        settings.http_timeout,
                    ),
                    shutdown.clone(),
                ));
                tasks.spawn(run_case_worker(pool, step, workers, shutdown));
            }
            Service::Provisioning => {
                let handler = Arc::new(provisioning::ProvisioningHandler::new(
                    self.carrier()?,
                    provisioning::RetryPolicy::default(),
                ));
                let listener = http::bind(settings.provisioning_addr).await?;
                tasks.spawn(http::serve(
                    listener,
                    http::with_standard_layers(
                        http::ops_routes(pool.clone()),
                        settings.http_timeout,
                    ),
                    shutdown.clone(),
                ));
                tasks.spawn(run_outbox_worker(pool, handler, workers, shutdown));
            }
            Service::Timers => {
                // Read and checked once at start; handed down (no global).
                let config = Arc::new(case_timers::TimersConfig::from_env()?);
                let handler = Arc::new(
                    case_timers::NotificationHandler::new(self.carrier()?).with_sealed_bodies(
                        case_workflows::assisted::SealedBodies::new(self.keys()?),
                    ),
                );
                let listener = http::bind(config.addr).await?;
                tasks.spawn(http::serve(
                    listener,
                    http::with_standard_layers(
                        http::ops_routes(pool.clone()),
                        settings.http_timeout,
                    ),
                    shutdown.clone(),
                ));
                tasks.spawn(case_timers::service::run(
                    pool.clone(),
                    config,
                    settings.worker_poll,
                    shutdown.clone(),
                ));
                // Partitions ahead and pruning: a pass now, then on its schedule.
                tasks.spawn(case_timers::housekeeping::run(
                    pool.clone(),
                    case_timers::housekeeping::HousekeepingConfig::from_env()?,
                    shutdown.clone(),
                ));
                tasks.spawn(run_outbox_worker(pool, handler, workers, shutdown));
            }
            Service::Webhooks => {
                // The link in suspension notices, from the same configuration as the timers'.
                let inbound = webhook_worker::InboundSettings {
                    start_url: case_timers::TimersConfig::from_env()?.start_url,
                    keys: self.keys()?,
                };
                let delivery = webhook_worker::DeliverySettings {
                    policy: webhooks::DestinationPolicy {
                        allow_private: settings.webhooks_allow_private,
                    },
                    schedule: webhooks::RetrySchedule::standard()
                        .scaled(settings.webhooks_retry_scale),
                    timeout: webhook_worker::DELIVERY_TIMEOUT,
                    keys: self.keys()?,
                };
                let listener = http::bind(settings.webhooks_addr).await?;
                tracing::info!(addr = %settings.webhooks_addr, "webhooks service listening");
                tasks.spawn(http::serve(
                    listener,
                    http::with_standard_layers(
                        http::ops_routes(pool.clone()),
                        settings.http_timeout,
                    ),
                    shutdown.clone(),
                ));
                tasks.spawn(webhook_worker::run(
                    pool, inbound, delivery, workers, shutdown,
                ));
            }
            Service::CarrierSim => {
                carrier_sim::prepare(&pool).await?;
                let listener = http::bind(settings.carrier_sim_addr).await?;
                tracing::info!(addr = %settings.carrier_sim_addr, "carrier simulator listening");
                let target = settings
                    .sim_webhook_url
                    .clone()
                    .zip(settings.sim_webhook_secret.clone())
                    .map(|(url, secret)| carrier_sim::WebhookTarget { url, secret });
                tasks.spawn(carrier_sim::run_with(listener, pool, shutdown, target));
            }
            Service::All => {
                for s in [
                    Service::Identity,
                    Service::Risk,
                    Service::Provisioning,
                    Service::Timers,
                    Service::Webhooks,
                    Service::Gateway,
                ] {
                    Box::pin(self.start(s, tasks)).await?;
                }
            }
        }
        Ok(())
    }
}

/// Waits for every task; the first failure stops the others.
pub async fn supervise(
    mut tasks: JoinSet<anyhow::Result<()>>,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let mut first_error = None;
    while let Some(done) = tasks.join_next().await {
        let outcome = done.context("a service task panicked").and_then(|r| r);
        if let Err(e) = outcome {
            if first_error.is_none() {
                tracing::error!(error.message = %e, "a service stopped with an error; stopping the others");
                first_error = Some(e);
            }
            shutdown.trigger();
        } else if !shutdown.is_triggered() {
            // A service ended on its own: stop the process rather than run half of it.
            shutdown.trigger();
        }
    }
    first_error.map_or(Ok(()), Err)
}

pub async fn serve(service: Service, settings: Settings) -> anyhow::Result<()> {
    // Production start-up checks (docs/operations.md, "Going to production").
    crate::checks::check_settings(service, &settings)?;
    let shutdown = Shutdown::on_signals();
    let pool = match wait_for_database(service, &settings, &shutdown).await {
        Ok(pool) => pool,
        // SIGTERM while waiting: a normal stop.
        Err(e) if shutdown.is_triggered() => {
            tracing::info!(error.message = %e, "stopped before the database answered");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    crate::checks::refuse_demo_data(&pool).await?;
    let wiring = Wiring::new(pool, settings, shutdown);
    let mut tasks = JoinSet::new();
    wiring.start(service, &mut tasks).await?;
    if service != Service::CarrierSim {
        wiring.start_case_gauges(&mut tasks);
    }
    supervise(tasks, &wiring.shutdown).await
}

/// `url` with `application_name=reactivation-<service>` added, unless the URL or
/// `PGAPPNAME` already names the application: `pg_stat_activity`, the server log's
/// `%a` and `pg_stat_statements` then tell which service holds a connection or ran a
/// statement. A startup parameter, so it costs no round trip.
fn with_application_name(url: &str, service: Service) -> String {
    if url.contains("application_name=") || std::env::var_os("PGAPPNAME").is_some() {
        return url.to_owned();
    }
    let name = match service {
        Service::Gateway => "gateway",
        Service::Identity => "identity",
        Service::Risk => "risk",
        Service::Provisioning => "provisioning",
        Service::Timers => "timers",
        Service::Webhooks => "webhooks",
        Service::CarrierSim => "carrier-sim",
        Service::All => "all",
    };
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}application_name=reactivation-{name}")
}

/// Connects the pool; while the database cannot be reached (down, restarting, out of
/// connection slots) the process does not exit: it retries with back-off (each
/// attempt logged) and serves `/healthz`, `/readyz` (503 saying why) and 503 with
/// `Retry-After` on every other route on the service's own address, until the
/// database answers; then that address is handed to the service.
async fn wait_for_database(
    service: Service,
    settings: &Settings,
    shutdown: &Shutdown,
) -> anyhow::Result<PgPool> {
    let url = &with_application_name(settings.require_database_url()?, service);
    let max = settings.db_max_connections + listen_connections(service);
    let status = db::StartupStatus::new();
    // The usual case: the database answers at once, nothing else is started.
    match db::try_connect(url, max).await {
        Ok(pool) => return Ok(pool),
        Err(e) if db::is_transient(&e) => {
            tracing::warn!(reason = %db::describe(&e), "the database cannot be reached at start");
        }
        Err(e) => anyhow::bail!(
            "cannot connect to the database named by DATABASE_URL: {}",
            db::describe(&e)
        ),
    }
    let addr = ops_addr(service, settings)?;
    let listener = http::bind(addr).await?;
    tracing::info!(%addr, "serving /readyz while waiting for the database");
    let stop_waiting = Shutdown::new();
    let server = tokio::spawn(http::serve(
        listener,
        http::starting_routes(status.clone()),
        stop_waiting.clone(),
    ));
    let pool = db::connect_with_retry(url, max, &status, shutdown).await;
    stop_waiting.trigger();
    // Idle keep-alive connections close at once; an in-flight request gets a moment.
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error.message = %e, "the start-up server failed"),
        Ok(Err(e)) => tracing::warn!(error.message = %e, "the start-up server panicked"),
        Err(_) => tracing::warn!("the start-up server did not stop within 5 s"),
    }
    pool
}

/// The address a service serves `/readyz` on (its public or operational address).
fn ops_addr(service: Service, settings: &Settings) -> anyhow::Result<std::net::SocketAddr> {
    Ok(match service {
        Service::Gateway | Service::All => settings.gateway_addr,
        Service::Identity => settings.identity_addr,
        Service::Risk => settings.risk_addr,
        Service::Provisioning => settings.provisioning_addr,
        Service::Timers => case_timers::TimersConfig::from_env()?.addr,
        Service::Webhooks => settings.webhooks_addr,
        Service::CarrierSim => settings.carrier_sim_addr,
    })
}

/// Pool connections held open by `LISTEN` on top of `REACTIVATION_DB_MAX_CONNECTIONS`:
/// only the gateway's live-status hub listens on a pool connection. The worker loops
/// listen on dedicated connections outside the pool (one shared by the case and
/// outbox loops of the process, one each for the timers' and the webhooks service's
/// own loops), so every configured pool connection stays for requests and claims
/// (docs/operations.md, "Connection sizing").
pub fn listen_connections(service: Service) -> u32 {
    match service {
        Service::All | Service::Gateway => 1,
        _ => 0,
    }
}

#[cfg(test)]
mod application_name_tests {
    use super::*;

    #[test]
    fn each_service_names_its_connections_unless_the_url_does() {
        if std::env::var_os("PGAPPNAME").is_some() {
            return;
        }
        assert_eq!(
            with_application_name("postgres://u@h/db", Service::Risk),
            "postgres://u@h/db?application_name=reactivation-risk"
        );
        assert_eq!(
            with_application_name("postgres://u@h/db?sslmode=disable", Service::Gateway),
            "postgres://u@h/db?sslmode=disable&application_name=reactivation-gateway"
        );
        assert_eq!(
            with_application_name("postgres://u@h/db?application_name=mine", Service::Timers),
            "postgres://u@h/db?application_name=mine"
        );
    }
}
