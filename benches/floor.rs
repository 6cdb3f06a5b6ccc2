//! The floor the load benchmark (`benches/load`) compares against: a bare async-graphql
//! server on axum, no auth, no limits, no tracing, no DataLoader, no database. Whatever
//! strongroom costs above this for the same query is its own request pipeline and storage.
//!
//! It answers `{ __typename }`, `ping`, and the shape of strongroom's secrets page,
//! `secrets(first: Int) { nodes { name currentVersion updatedAt dependents { state resource
//! { name } } } }`, from memory: the benchmark's seed (200 secrets `BENCH_SECRET_000` ...
//! `_199`, each referenced by two of the pipelines `bench-pipeline-000` ... `_099`, the
//! even-numbered pipelines deployed), built once at start, with strongroom's GraphQL types
//! (`Int!`, the `DateTime` scalar, the `DependentState` enum), so its JSON answer is the size
//! of strongroom's. An `Authorization` header is ignored.
//!
//! `floor [ADDR]` (default `127.0.0.1:0`) prints `listening on http://ADDR` once bound.
#![forbid(unsafe_code)]

use std::{
    io::Write,
    net::{Ipv4Addr, SocketAddr},
};

use async_graphql::{EmptyMutation, EmptySubscription, Enum, Object, Schema, SimpleObject};
use async_graphql_axum::GraphQL;
use axum::{Router, routing::post_service};
use chrono::{DateTime, SubsecRound, Utc};

/// As the load benchmark seeds strongroom (benches/load.py).
const SEED_SECRETS: usize = 200;
const SEED_PIPELINES: usize = 100;
const REFERENCES_PER_PIPELINE: usize = 4;

/// strongroom's `DependentState` (schema.graphql).
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
enum DependentState {
    UpToDate,
    Stale,
    NotDeployed,
}

#[derive(SimpleObject)]
struct Resource {
    name: String,
}

#[derive(SimpleObject)]
struct Dependent {
    state: DependentState,
    resource: Resource,
}

#[derive(SimpleObject)]
struct Secret {
    name: String,
    current_version: i32,
    updated_at: DateTime<Utc>,
    dependents: Vec<Dependent>,
}

/// strongroom's `SecretConnection`, with only `nodes`.
struct SecretConnection<'a> {
    nodes: &'a [Secret],
}

#[Object]
impl SecretConnection<'_> {
    async fn nodes(&self) -> &[Secret] {
        self.nodes
    }
}

struct Query {
    secrets: Vec<Secret>,
}

#[Object]
impl Query {
    /// A constant, so the request costs only the HTTP and GraphQL layers.
    async fn ping(&self) -> bool {
        true
    }

    /// The first `first` (default all) of the 200 secrets, oldest first.
    async fn secrets(&self, first: Option<i32>) -> SecretConnection<'_> {
        let count = first.map_or(self.secrets.len(), |n| {
            usize::try_from(n).unwrap_or(0).min(self.secrets.len())
        });
        SecretConnection {
            nodes: &self.secrets[..count],
        }
    }
}

/// The seed: pipeline `p` references secrets `4p .. 4p+3` (modulo 200), so secret `i` is
/// referenced by pipelines `i / 4` and `i / 4 + 50`; the even-numbered pipelines are
/// deployed (`UP_TO_DATE`), the others `NOT_DEPLOYED`.
fn seed() -> Vec<Secret> {
    // A timestamp as strongroom returns one read back from its database (microseconds).
    let updated_at = Utc::now().trunc_subsecs(6);
    let mut secrets: Vec<Secret> = (0..SEED_SECRETS)
        .map(|i| Secret {
            name: format!("BENCH_SECRET_{i:03}"),
            current_version: 1,
            updated_at,
            dependents: Vec::new(),
        })
        .collect();
    for pipeline in 0..SEED_PIPELINES {
        for k in 0..REFERENCES_PER_PIPELINE {
            let secret = (pipeline * REFERENCES_PER_PIPELINE + k) % SEED_SECRETS;
            secrets[secret].dependents.push(Dependent {
                state: if pipeline % 2 == 0 {
                    DependentState::UpToDate
                } else {
                    DependentState::NotDeployed
                },
                resource: Resource {
                    name: format!("bench-pipeline-{pipeline:03}"),
                },
            });
        }
    }
    secrets
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let address: SocketAddr = match std::env::args().nth(1) {
        Some(text) => text.parse().map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{text:?} is not a listen address: {e}"),
            )
        })?,
        None => SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
    };
    let query = Query { secrets: seed() };
    let schema = Schema::new(query, EmptyMutation, EmptySubscription);
    let app = Router::new().route("/graphql", post_service(GraphQL::new(schema)));
    let listener = tokio::net::TcpListener::bind(address).await?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on http://{}", listener.local_addr()?)?;
    stdout.flush()?;
    axum::serve(listener, app).await
}
