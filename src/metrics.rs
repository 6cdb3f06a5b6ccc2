//! Prometheus metrics, served at `GET /metrics` (OpenMetrics text). Counts only: no
//! names, ids or values.
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderCall {
    provider: &'static str,
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedToken {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CloseCode {
    code: u16,
}

/// The server's metrics registry.
pub struct Metrics {
    registry: Registry,
    key_provider_calls: Family<ProviderCall, Counter>,
    db_statements: Counter,
    /// SQLite: the writer's group commits (one `fsync` each, for any number of writes).
    pub db_group_commits: Counter,
    /// Open `/graphql/ws` connections.
    pub subscription_connections: Gauge,
    /// Open connections, upgraded ones included.
    pub http_connections: Gauge,
    subscription_closes: Family<CloseCode, Counter>,
    /// Cached data keys dropped because their secret was purged (or, after a gap in the
    /// events feed, because one may have been).
    pub data_keys_forgotten: Counter,
    auth_refused: Family<RefusedToken, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let key_provider_calls = Family::<ProviderCall, Counter>::default();
        registry.register(
            "strongroom_key_provider_calls",
            "Calls made to a key provider (a data key cache hit makes none)",
            key_provider_calls.clone(),
        );
        let db_statements = Counter::default();
        registry.register(
            "strongroom_db_statements",
            "SQL statements run against the database",
            db_statements.clone(),
        );
        let db_group_commits = Counter::default();
        registry.register(
            "strongroom_db_group_commits",
            "SQLite: commits of the writer's group commit, one fsync each for any number of writes",
            db_group_commits.clone(),
        );
        let subscription_connections = Gauge::default();
        registry.register(
            "strongroom_subscription_connections",
            "Open subscription (WebSocket) connections",
            subscription_connections.clone(),
        );
        let http_connections = Gauge::default();
        registry.register(
            "strongroom_http_connections",
            "Open connections, WebSocket ones included (at most STRONGROOM_MAX_CONNECTIONS)",
            http_connections.clone(),
        );
        let subscription_closes = Family::<CloseCode, Counter>::default();
        registry.register(
            "strongroom_subscription_closes",
            "Subscription connections the server closed, by close code (4401/4403: \
             credentials; 4408: no init; 1001: shutdown)",
            subscription_closes.clone(),
        );
        let data_keys_forgotten = Counter::default();
        registry.register(
            "strongroom_data_keys_forgotten",
            "Cached data keys dropped at once because their secret was purged (all of them \
             after a gap in the events feed)",
            data_keys_forgotten.clone(),
        );
        let auth_refused = Family::<RefusedToken, Counter>::default();
        registry.register(
            "strongroom_auth_refused",
            "Requests with a real token that is no longer accepted, by reason (revoked, \
             expired); unknown tokens are not counted here",
            auth_refused.clone(),
        );
        Self {
            registry,
            key_provider_calls,
            data_keys_forgotten,
            auth_refused,
            db_statements,
            db_group_commits,
            subscription_connections,
            http_connections,
            subscription_closes,
        }
    }
}

impl Metrics {
    /// A counter handle for one key provider.
    pub fn provider_calls(&self, provider: &'static str) -> ProviderCalls {
        ProviderCalls {
            provider,
            family: self.key_provider_calls.clone(),
        }
    }

    /// Counts every statement `db` runs from now on.
    pub fn count_statements(&self, db: &mut sea_orm::DatabaseConnection) {
        let counter = self.db_statements.clone();
        db.set_metric_callback(move |_| {
            counter.inc();
        });
    }

    /// A revoked or expired token was presented.
    pub fn auth_refused(&self, reason: &'static str) {
        self.auth_refused
            .get_or_create(&RefusedToken { reason })
            .inc();
    }

    /// The server closed a subscription connection with `code`.
    pub fn subscription_closed(&self, code: u16) {
        self.subscription_closes
            .get_or_create(&CloseCode { code })
            .inc();
    }

    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// Counts one provider's calls by operation.
#[derive(Clone, Debug)]
pub struct ProviderCalls {
    provider: &'static str,
    family: Family<ProviderCall, Counter>,
}

impl ProviderCalls {
    /// For providers built outside a server (commands, tests).
    pub fn detached(provider: &'static str) -> Self {
        Self {
            provider,
            family: Family::default(),
        }
    }

    /// Calls of `operation` so far.
    pub fn get(&self, operation: &'static str) -> u64 {
        self.family
            .get_or_create(&ProviderCall {
                provider: self.provider,
                operation,
            })
            .get()
    }

    pub fn count(&self, operation: &'static str) {
        self.family
            .get_or_create(&ProviderCall {
                provider: self.provider,
                operation,
            })
            .inc();
    }
}
