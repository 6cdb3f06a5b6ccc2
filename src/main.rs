//! The `strongroom` command: a small dispatcher over [`strongroom::app`].
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use strongroom::{
    app,
    config::{Cli, Command},
    graphql, telemetry,
};

/// See `Cargo.toml`: per-thread heaps instead of glibc's contended arenas.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command();
    // `run` is a client: no log subscriber (see `strongroom::run`), its own exit statuses.
    if !matches!(command, Command::Run(_)) {
        telemetry::init(cli.global.log_format);
    }
    let result = match command {
        Command::Serve(args) => app::serve(&cli.global, &args).await,
        Command::Migrate => app::open_database(&cli.global).await.map(|_| {
            tracing::info!("migrations applied");
        }),
        Command::Schema => {
            print!("{}", graphql::sdl());
            Ok(())
        }
        Command::Bootstrap(args) => app::bootstrap(&cli.global, &args.org, &args.name).await,
        Command::RotateKeys(args) => app::rotate_keys(&cli.global, &args).await,
        Command::Run(args) => return strongroom::run::run(*args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "strongroom failed");
            ExitCode::FAILURE
        }
    }
}
