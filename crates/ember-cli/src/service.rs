//! `ember serve` and the commands that read the service's state.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context as _;
use ember_service::{Ember, ServiceConfig};

use crate::args::{ServeArgs, ServiceArgs};

/// The configuration: the file's (or the defaults), then the flags.
fn load(args: &ServiceArgs) -> anyhow::Result<ServiceConfig> {
    let mut config = match &args.config {
        Some(path) => ServiceConfig::from_file(path)?,
        None => ServiceConfig::default(),
    };
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    Ok(config)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Runs the API until SIGINT or SIGTERM.
pub fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours only for a person watching; a log file gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let mut config = load(&args.service)?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    runtime()?.block_on(async move {
        let listen = config.listen;
        let ember = Ember::open(config).await?;
        ember.start().await?;
        tokio::select! {
            served = ember_api::serve(ember, listen) => served.with_context(|| format!("cannot serve on {listen}"))?,
            _ = shutdown() => tracing::info!("stopping"),
        }
        Ok(ExitCode::SUCCESS)
    })
}

async fn shutdown() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

/// Prints where a volume's data is.
pub fn volume_path(id: &str, args: &ServiceArgs) -> anyhow::Result<ExitCode> {
    let config = load(args)?;
    let path = runtime()?.block_on(async {
        let db = ember_meta::Database::connect(&config.database_url()).await?;
        db.get_volume(id).await
    })?;
    match path {
        Some(volume) => {
            println!("{}", volume.path);
            Ok(ExitCode::SUCCESS)
        }
        None => anyhow::bail!("volume {id} does not exist"),
    }
}
