//! Wiring: open the database, build the key provider, run the server or a command.
use std::{net::SocketAddr, sync::Arc};

use entity::secret_version;
use sea_orm::{DatabaseConnection, EntityTrait, PaginatorTrait};
use secrecy::ExposeSecret;

use crate::{
    Error, Result,
    config::{GlobalArgs, KeyArgs, KmsKind, ServeArgs},
    crypto::{KeyProvider, LocalKeyProvider, MasterKey},
    db,
    domain::identity,
    graphql::{self, AppData},
    http::{self, AppState},
};

pub async fn open_database(global: &GlobalArgs) -> Result<DatabaseConnection> {
    db::connect(&global.database_url, global.db_max_connections).await
}

/// Builds the configured key provider. The local master key file is only created for a
/// database that holds no encrypted value yet: creating a new key next to existing data
/// would make it unreadable.
pub async fn key_provider(keys: &KeyArgs, db: &DatabaseConnection) -> Result<Arc<dyn KeyProvider>> {
    match keys.kms {
        KmsKind::Local => {
            let keyring = if let Some(text) = &keys.master_key {
                vec![MasterKey::from_base64(text.0.as_str())?]
            } else if keys.master_key_file.exists() {
                MasterKey::read_keyring(&keys.master_key_file)?
            } else {
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
                vec![key]
            };
            Ok(Arc::new(LocalKeyProvider::new(keyring)))
        }
    }
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
    let db = open_database(global).await?;
    let keys = key_provider(&global.keys, &db).await?;
    if is_sqlite(&global.database_url) && identity::is_fresh(&db).await? {
        let (_, admin, issued) = identity::bootstrap(&db, "default", "admin").await?;
        println!(
            "Fresh database: created organization \"default\" and admin {:?}. \
             Admin API token (shown once, store it now):",
            admin.name
        );
        println!("{}", issued.token.expose_secret());
    }
    let data = AppData {
        db,
        keys,
        version_retention: args.version_retention,
    };
    let state = Arc::new(AppState {
        schema: graphql::build_schema(data.clone(), &args.limits),
        data,
        limits: args.limits.clone(),
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| Error::Internal(format!("cannot listen on {}: {e}", args.listen)))?;
    let address: SocketAddr = listener
        .local_addr()
        .map_err(|e| Error::Internal(format!("no local address: {e}")))?;
    tracing::info!(
        key_provider = state.data.keys.kind(),
        "listening on http://{address}"
    );
    axum::serve(listener, http::router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| Error::Internal(format!("server error: {e}")))?;
    tracing::info!("shut down");
    Ok(())
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
