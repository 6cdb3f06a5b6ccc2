//! The floor the load benchmark (`benches/load`) compares against: a bare async-graphql
//! server on axum with one trivial field, no auth, no limits, no tracing, no database.
//! Whatever strongroom's `{ __typename }` costs above this is its own request pipeline.
//!
//! `floor [ADDR]` (default `127.0.0.1:0`) prints `listening on http://ADDR` once bound.
#![forbid(unsafe_code)]

use std::{
    io::Write,
    net::{Ipv4Addr, SocketAddr},
};

use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};
use async_graphql_axum::GraphQL;
use axum::{Router, routing::post_service};

struct Query;

#[Object]
impl Query {
    /// A constant, so the request costs only the HTTP and GraphQL layers.
    async fn ping(&self) -> bool {
        true
    }
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
    let schema = Schema::new(Query, EmptyMutation, EmptySubscription);
    let app = Router::new().route("/graphql", post_service(GraphQL::new(schema)));
    let listener = tokio::net::TcpListener::bind(address).await?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on http://{}", listener.local_addr()?)?;
    stdout.flush()?;
    axum::serve(listener, app).await
}
