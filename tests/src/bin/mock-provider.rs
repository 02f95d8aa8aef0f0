//! Mock LLM provider for spendfuse's tests and demo: OpenAI, Azure OpenAI, Anthropic and Gemini
//! wire formats.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use clap::Parser;
use spendfuse_tests::mock::{self, KnobDefaults};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;
use tracing_subscriber::EnvFilter;

/// Serves OpenAI chat completions and Responses, Azure OpenAI, Anthropic Messages, Gemini and
/// embeddings with generated text, for tests. Each `x-mock-*` request header overrides the
/// matching default below for one request.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Output tokens per choice, unless the request's maximum is lower.
    #[arg(long, default_value_t = 20)]
    output_tokens: u64,
    /// Output tokens per streamed event per choice.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    tokens_per_chunk: u64,
    /// Pause before each streamed content event, in milliseconds.
    #[arg(long, default_value_t = 0)]
    chunk_delay_ms: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let defaults = KnobDefaults {
        output_tokens: args.output_tokens,
        tokens_per_chunk: args.tokens_per_chunk,
        chunk_delay: Duration::from_millis(args.chunk_delay_ms),
    };
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, listen = %args.listen, "cannot listen: pick a free port with --listen");
            return ExitCode::FAILURE;
        }
    };
    let address = listener.local_addr().unwrap_or(args.listen);
    tracing::info!(%address, ?defaults, "mock provider listening");
    let served = axum::serve(listener, mock::router(defaults))
        .with_graceful_shutdown(shutdown_signal())
        .await;
    match served {
        Ok(()) => {
            tracing::info!("mock provider stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(%error, "mock provider failed");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on ctrl-c or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot wait for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot wait for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => tracing::info!("ctrl-c received, stopping"),
        () = terminate => tracing::info!("SIGTERM received, stopping"),
    }
}
