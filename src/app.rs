//! Wiring: open the database, build the key provider, run the server or a command.
use std::{net::SocketAddr, sync::Arc};

use entity::secret_version;
use sea_orm::{DatabaseConnection, EntityTrait, PaginatorTrait};
use secrecy::ExposeSecret;
use std::time::Duration;

use crate::{
    Error, Result,
    auth::Authenticator,
    config::{GlobalArgs, KeyArgs, KmsKind, MetricsToken, RotateKeysArgs, ServeArgs},
    crypto::{
        AwsKmsProvider, CachingKeyProvider, KeyProvider, KeyRouter, LOCAL_KEY_ID_PREFIX,
        LocalKeyProvider, MasterKey,
    },
    db::{self, Db},
    domain::{
        audit::{self, AuditLog},
        events::{Change, SecretEventKind},
        identity, lifecycle, rotation,
        usage::Usage,
    },
    events::{self, Delivery},
    graphql::{self, AppData, ParsedDocuments, PersistedQueries},
    http::{
        self, AddressRateLimiter, AppState, KeyCheck, MetricsAccess, Sessions, TokenRateLimiter,
    },
    metrics::Metrics,
    webhooks,
};

pub async fn open_database(global: &GlobalArgs) -> Result<Db> {
    db::connect(&global.database_url, global.db_max_connections).await
}

/// The key providers the configuration asks for.
pub struct Providers {
    pub kms: KmsKind,
    pub local: Option<Arc<LocalKeyProvider>>,
    pub aws: Option<AwsKmsProvider>,
}

impl Providers {
    /// Loads the local keyring when it is the active provider or exists (to unwrap keys
    /// it wrapped before a migration), and connects to AWS KMS when configured.
    pub async fn load(keys: &KeyArgs, db: &DatabaseConnection, metrics: &Metrics) -> Result<Self> {
        let local = local_keyring(keys, db).await?.map(|keyring| {
            Arc::new(LocalKeyProvider::new(
                keyring,
                metrics.provider_calls("local"),
            ))
        });
        let aws = match (&keys.kms_key_id, keys.kms) {
            (Some(key_id), _) => Some(
                AwsKmsProvider::connect(
                    key_id.clone(),
                    keys.kms_retired_key_ids.clone(),
                    keys.aws_settings(),
                    metrics.provider_calls("aws"),
                )
                .await,
            ),
            (None, KmsKind::Aws) => {
                return Err(Error::bad_input(
                    "STRONGROOM_KMS=aws needs STRONGROOM_KMS_KEY_ID (a key id, alias or ARN)",
                ));
            }
            (None, KmsKind::Local) => None,
        };
        Ok(Self {
            kms: keys.kms,
            local,
            aws,
        })
    }

    fn local_provider(&self) -> Option<Arc<dyn KeyProvider>> {
        self.local.clone().map(|p| p as Arc<dyn KeyProvider>)
    }

    fn aws_provider(&self) -> Option<Arc<dyn KeyProvider>> {
        self.aws
            .clone()
            .map(|p| Arc::new(p) as Arc<dyn KeyProvider>)
    }

    /// All providers: the configured one makes new data keys, any of them unwraps.
    pub fn router(&self) -> Result<KeyRouter> {
        let (active, other) = match self.kms {
            KmsKind::Local => (self.local_provider(), self.aws_provider()),
            KmsKind::Aws => (self.aws_provider(), self.local_provider()),
        };
        let active = active
            .ok_or_else(|| Error::Internal("the configured key provider is missing".into()))?;
        Ok(KeyRouter::new(active, other.into_iter().collect()))
    }
}

/// The local keyring, when configured. The master key file is only created for a database
/// that holds no encrypted value yet: a new key next to existing data would make it
/// unreadable.
async fn local_keyring(keys: &KeyArgs, db: &DatabaseConnection) -> Result<Option<Vec<MasterKey>>> {
    if let Some(text) = &keys.master_key {
        return Ok(Some(vec![MasterKey::from_base64(text.0.as_str())?]));
    }
    if keys.master_key_file.exists() {
        return MasterKey::read_keyring(&keys.master_key_file).map(Some);
    }
    if keys.kms != KmsKind::Local {
        return Ok(None);
    }
    let stored = secret_version::Entity::find().count(db).await?;
    if stored > 0 {
        return Err(Error::Internal(format!(
            "the master key file {} does not exist, but {stored} encrypted values are \
             stored; restore the file or set STRONGROOM_MASTER_KEY",
            keys.master_key_file.display()
        )));
    }
    let key = MasterKey::create_keyring(&keys.master_key_file)?;
    tracing::info!(
        path = %keys.master_key_file.display(),
        key_id = key.id(),
        "created a new local master key; back it up, values cannot be read without it"
    );
    Ok(Some(vec![key]))
}

/// The serving key provider: the providers behind the data key cache.
pub async fn key_provider(
    keys: &KeyArgs,
    db: &DatabaseConnection,
    metrics: &Metrics,
) -> Result<Arc<dyn KeyProvider>> {
    let providers = Providers::load(keys, db, metrics).await?;
    if let Some(aws) = &providers.aws
        && let Err(e) = aws.allowed_key_arns().await
    {
        // Start anyway: reads of cached keys and metadata work, and /readyz tells.
        tracing::warn!(error = %e, "cannot resolve the configured KMS keys at start");
    }
    let router = providers.router()?;
    if let Err(e) = router.health().await {
        tracing::warn!(error = %e, "the key provider is not reachable at start");
    }
    Ok(Arc::new(CachingKeyProvider::new(
        Arc::new(router),
        keys.cache_limits(),
    )))
}

/// `strongroom rotate-keys --to KEY_ID`.
pub async fn rotate_keys(global: &GlobalArgs, args: &RotateKeysArgs) -> Result<()> {
    let db = open_database(global).await?;
    let metrics = Metrics::default();
    let providers = Providers::load(&global.keys, db.read(), &metrics).await?;
    let (target, target_key_id): (Arc<dyn KeyProvider>, String) =
        if args.to.starts_with(LOCAL_KEY_ID_PREFIX) {
            let keyring = providers.local.as_ref().ok_or_else(|| {
                Error::bad_input("rotating to a local key needs the master key file")
            })?;
            let target = keyring.with_active(&args.to).ok_or_else(|| {
                Error::bad_input(format!("{} is not a key of the master key file", args.to))
            })?;
            (Arc::new(target), args.to.clone())
        } else {
            let aws = providers.aws.as_ref().ok_or_else(|| {
                Error::bad_input(
                    "rotating to an AWS KMS key needs STRONGROOM_KMS_KEY_ID (and AWS credentials)",
                )
            })?;
            let target = aws.with_key(args.to.clone());
            let arn = target.key_arn().await?;
            (Arc::new(target), arn)
        };
    // Unwrap with the configured providers, each data key by the one that wrapped it (and,
    // for AWS, only under the configured active and retired keys).
    let source = providers.router()?;
    tracing::info!(target = %target_key_id, "rotating data keys");
    let report = rotation::rotate(
        db.write(),
        &source,
        target.as_ref(),
        &target_key_id,
        args.batch_size,
        |done, total| tracing::info!("re-wrapped {done} of {total} data keys"),
    )
    .await?;
    println!(
        "rotated {} data keys to {target_key_id}; {} were already wrapped by it; {} failed",
        report.rotated, report.already, report.failed
    );
    if report.failed > 0 {
        return Err(Error::Internal(format!(
            "{} data keys could not be unwrapped; see the warnings above",
            report.failed
        )));
    }
    Ok(())
}

fn is_sqlite(url: &str) -> bool {
    url.starts_with("sqlite:")
}

/// `strongroom bootstrap`: the token goes alone on the last line of stdout.
pub async fn bootstrap(global: &GlobalArgs, org: &str, admin: &str) -> Result<()> {
    let db = open_database(global).await?;
    let (org, admin, issued) = identity::bootstrap(&db, org, admin).await?;
    println!(
        "Organization {:?}: admin {:?} has a new API token (shown once, store it now):",
        org.name, admin.name
    );
    println!("{}", issued.token.expose_secret());
    Ok(())
}

/// `strongroom serve`.
pub async fn serve(global: &GlobalArgs, args: &ServeArgs) -> Result<()> {
    let mut db = open_database(global).await?;
    let metrics = Arc::new(Metrics::default());
    db.for_each_pool(|pool| metrics.count_statements(pool));
    db.count_group_commits(metrics.db_group_commits.clone());
    let keys = key_provider(&global.keys, db.read(), &metrics).await?;
    if is_sqlite(&global.database_url) && identity::is_fresh(db.read()).await? {
        let (_, admin, issued) = identity::bootstrap(&db, "default", "admin").await?;
        println!(
            "Fresh database: created organization \"default\" and admin {:?}. \
             Admin API token (shown once, store it now):",
            admin.name
        );
        println!("{}", issued.token.expose_secret());
    }
    if let Some(pool) = postgres_pool(&db) {
        // Before serving: no change committed from now on escapes a subscriber.
        db.events().listen(pool, args.events_retention()).await?;
    }
    let usage = Usage::default();
    let flusher = usage.start_flusher(db.clone(), Duration::from_secs(args.usage_flush_seconds));
    let data = AppData {
        audit: AuditLog::start(db.write().clone()),
        usage,
        tokens: Arc::new(Authenticator::new(Duration::from_millis(
            args.auth_cache_millis,
        ))),
        persisted: PersistedQueries::default(),
        parsed: ParsedDocuments::default(),
        denials: Arc::default(),
        db,
        keys,
        version_retention: args.version_retention,
        default_secret_access: args.default_secret_access,
        recovery_window: args.recovery_window(),
        webhooks: Arc::new(args.webhook_settings()),
    };
    webhooks::start(data.db.clone(), data.keys.clone(), data.webhooks.clone())?;
    tokio::spawn(sweep(
        data.db.clone(),
        args.sweep_interval_secs,
        args.events_retention(),
    ));
    tokio::spawn(write_folded_denials(data.clone()));
    tokio::spawn(forget_purged_keys(
        data.db.events().subscribe(),
        data.keys.clone(),
        metrics.data_keys_forgotten.clone(),
    ));
    let (sessions, close_sessions) = Sessions::new(&args.limits)?;
    // Bound before the state is made: the default public URL is the bound address.
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| Error::Internal(format!("cannot listen on {}: {e}", args.listen)))?;
    let address: SocketAddr = listener
        .local_addr()
        .map_err(|e| Error::Internal(format!("no local address: {e}")))?;
    let oidc = Arc::new(crate::oidc::Verifier::new(args.oidc_settings())?);
    let sso = args
        .sso
        .settings(address)?
        .map(|settings| crate::sso::Sso::new(settings, oidc.clone()).map(Arc::new))
        .transpose()?;
    let state_data = data.clone();
    let state = Arc::new(AppState {
        schema: graphql::build_schema(data.clone(), &args.limits),
        data,
        limits: args.limits.clone(),
        metrics,
        rate_limiter: TokenRateLimiter::new(args.limits.rate_limit),
        address_limiter: AddressRateLimiter::new(args.limits.unauthenticated_rate_limit),
        metrics_access: match (
            &args.metrics_listen,
            args.metrics_token
                .as_ref()
                .and_then(MetricsToken::configured),
        ) {
            (Some(_), _) => MetricsAccess::Elsewhere,
            (None, Some(token)) => MetricsAccess::Token(token.clone()),
            (None, None) => MetricsAccess::Off,
        },
        key_check: KeyCheck::default(),
        cors_origins: args.cors_origins.clone(),
        sessions: sessions.clone(),
        oidc,
        sso,
    });
    tracing::info!(
        key_provider = state.data.keys.kind(),
        key_id = state.data.keys.active_key_id(),
        "listening on http://{address}"
    );
    let (signalled, mut on_signal) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown_signal().await;
        // Upgraded connections are not the server's to wait for: tell them.
        let _ = close_sessions.send(true);
        let _ = signalled.send(true);
    };
    let limits = http::server::ServerLimits {
        max_connections: args.max_connections as usize,
        header_read_timeout: Duration::from_secs(args.header_read_timeout_secs),
    };
    let open_connections = state.metrics.http_connections.clone();
    if let Some(metrics_listen) = args.metrics_listen {
        let listener = tokio::net::TcpListener::bind(metrics_listen)
            .await
            .map_err(|e| Error::Internal(format!("cannot listen on {metrics_listen}: {e}")))?;
        let address = listener
            .local_addr()
            .map_err(|e| Error::Internal(format!("no local address: {e}")))?;
        tracing::info!("metrics listening on http://{address}/metrics");
        let mut stop = on_signal.clone();
        let token = args
            .metrics_token
            .as_ref()
            .and_then(MetricsToken::configured);
        let router = http::metrics_router(state.metrics.clone(), token.cloned());
        tokio::spawn(http::server::serve(
            listener,
            router,
            limits.clone(),
            open_connections.clone(),
            async move {
                let _ = stop.wait_for(|signalled| *signalled).await;
            },
        ));
    }
    let server = http::server::serve(
        listener,
        http::router(state),
        limits,
        open_connections,
        shutdown,
    );
    // Graceful, within a deadline: a client that never finishes its request (a half-sent
    // header, a stalled upload) must not keep the process from exiting.
    let grace = Duration::from_secs(args.shutdown_grace_secs);
    let deadline = async move {
        if on_signal.wait_for(|signalled| *signalled).await.is_err() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        () = server => {}
        () = deadline => tracing::warn!(
            grace_secs = args.shutdown_grace_secs,
            "connections still open when the shutdown grace ran out; closing them"
        ),
    }
    sessions.drained(Duration::from_secs(2)).await;
    // Every request has finished: what they noted is all there is to write.
    flusher.shutdown(Duration::from_secs(10)).await;
    let folded = state_data.denials.take_due(None);
    if let Err(e) = audit::record_folded_denials(state_data.db.write(), &folded).await {
        tracing::error!(error = %e, "could not record folded refusals at shutdown");
    }
    tracing::info!("shut down");
    Ok(())
}

/// The background sweeps, every `interval_secs`: purge the secrets whose recovery window
/// ended, announce rotations that came due, prune the events outbox past its retention.
/// Each pass is safe to run on every replica at once (see `domain::lifecycle` and
/// `events::prune`); a failed pass is logged and tried again next time.
async fn sweep(db: Db, interval_secs: u64, events_retention: Duration) {
    let mut ticks = tokio::time::interval(Duration::from_secs(interval_secs));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match lifecycle::purge_due(&db).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "purged secrets whose recovery window ended"),
            Err(e) => tracing::error!(error = %e, "the purge sweep failed"),
        }
        match lifecycle::announce_due_rotations(&db).await {
            Ok(0) => {}
            Ok(announced) => tracing::info!(announced, "announced secrets due for rotation"),
            Err(e) => tracing::error!(error = %e, "the rotation sweep failed"),
        }
        match events::prune(&db, events_retention).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "pruned events past their retention"),
            Err(e) => tracing::error!(error = %e, "the events outbox prune failed"),
        }
        match webhooks::prune(&db, events_retention).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "pruned webhook messages past their retention"),
            Err(e) => tracing::error!(error = %e, "the webhook messages prune failed"),
        }
        match crate::domain::sessions::prune(&db).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "deleted console sessions past their end"),
            Err(e) => tracing::error!(error = %e, "the console sessions prune failed"),
        }
    }
}

/// Drops the cached data keys of every purged secret as its purge is published — by this
/// replica or another — and all of them when the feed had a gap that may have hidden one.
async fn forget_purged_keys(
    mut feed: tokio::sync::broadcast::Receiver<Delivery>,
    keys: Arc<dyn KeyProvider>,
    forgotten: prometheus_client::metrics::counter::Counter,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let dropped = match feed.recv().await {
            Ok(Delivery::Notice(notice)) => match notice.change {
                Change::Secret {
                    kind: SecretEventKind::Purged,
                    secret_id,
                    ..
                } => keys.forget_secret(secret_id).await,
                _ => continue,
            },
            Ok(Delivery::Gap) | Err(RecvError::Lagged(_)) => keys.forget_all().await,
            Err(RecvError::Closed) => return,
        };
        forgotten.inc_by(dropped);
    }
}

/// Every few seconds, the refusals folded over a minute that is now over (see
/// `domain::denials`), one row per principal and minute.
async fn write_folded_denials(data: AppData) {
    let mut ticks = tokio::time::interval(Duration::from_secs(5));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let folded = data.denials.take_due(Some(chrono::Utc::now()));
        if folded.is_empty() {
            continue;
        }
        if let Err(e) = audit::record_folded_denials(data.db.write(), &folded).await {
            tracing::error!(error = %e, "could not record folded refusals");
        }
    }
}

/// The PostgreSQL pool behind `db`, if that is the store.
fn postgres_pool(db: &Db) -> Option<sea_orm::sqlx::PgPool> {
    (db.backend() == sea_orm::DatabaseBackend::Postgres)
        .then(|| db.write().get_postgres_connection_pool().clone())
}

/// Resolves on SIGINT or SIGTERM; in-flight requests then finish before exit.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
