//! spendfuse-sidecar binary: loads pricing and budgets, waits for Redis, and serves the API
//! until SIGTERM or ctrl-c.

use std::future::IntoFuture;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use axum::serve::ListenerExt;
use clap::Parser;
use spendfuse_sidecar::admin::AdminToken;
use spendfuse_sidecar::alerts::{Alerts, RetryPolicy};
use spendfuse_sidecar::cli::{self, BudgetCommand, Command};
use spendfuse_sidecar::config::{admin_token, Args, ADMIN_TOKEN_ENV};
use spendfuse_sidecar::reload::{
    spawn_sighup_reload, watch_pricing_file, SharedPricing, POLL_INTERVAL,
};
use spendfuse_sidecar::store::{BudgetId, BudgetUpdate, Store, StoreOptions};
use spendfuse_sidecar::{budgets, router, AppState};
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

/// How long open connections may take to finish after a stop signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// First and longest pause between attempts to reach Redis at start.
const STARTUP_RETRY_MIN: Duration = Duration::from_millis(200);
const STARTUP_RETRY_MAX: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    // Budget commands print JSON on stdout, so they run before logging starts there.
    if let Some(Command::Budgets(command)) = &args.command {
        return run_budget_command(&args, command).await;
    }

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let colored = std::io::stdout().is_terminal();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colored)
        .init();

    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "spendfuse-sidecar cannot run");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let (stop_sender, stop) = watch::channel(false);
    tokio::spawn(async move {
        let signal = wait_for_signal().await;
        tracing::info!(signal, "stopping");
        // The receivers live until `run` returns, so a failed send means no receiver is left.
        let _ = stop_sender.send(true);
    });

    let token = admin_token(
        args.admin_token_file.as_deref(),
        std::env::var(ADMIN_TOKEN_ENV).ok(),
    )
    .map_err(|error| error.to_string())?;
    let admin_token = match token {
        Some(token) => AdminToken::new(&token),
        None => {
            tracing::info!("admin API disabled: no admin token configured");
            AdminToken::disabled()
        }
    };

    let pricing = SharedPricing::load(&args.pricing)
        .map_err(|error| format!("{error} (file {})", args.pricing.display()))?;
    let loaded = pricing.current();
    tracing::info!(
        path = %args.pricing.display(),
        models = loaded.model_count(),
        aliases = loaded.alias_count(),
        fallback = loaded.has_fallback(),
        checked = loaded.checked(),
        "pricing loaded"
    );
    // Registered before the wait for Redis, because SIGHUP ends a process that has no handler.
    let sighup_task = spawn_sighup_reload(pricing.clone())
        .map_err(|error| format!("cannot listen for SIGHUP: {error}"))?;
    let watch_task = tokio::spawn(watch_pricing_file(pricing.clone(), POLL_INTERVAL));
    tracing::info!(
        poll_interval_s = POLL_INTERVAL.as_secs(),
        "pricing reloads on SIGHUP, on POST /admin/pricing/reload and on a change of the file"
    );
    let limits = match &args.budgets {
        Some(path) => budgets::load(path).map_err(|error| error.to_string())?,
        None => Vec::new(),
    };

    let alerts = Alerts::new(
        &args.alert_thresholds,
        args.alert_webhook_url.as_deref(),
        RetryPolicy::default(),
    )
    .map_err(|error| error.to_string())?;
    let options = StoreOptions {
        utc_offset_minutes: args.utc_offset_minutes,
        clock_shift_ms: 0,
    };
    let store = Store::connect(&args.redis_target(), options).map_err(|e| e.to_string())?;
    let started = tokio::select! {
        result = prepare_redis(&store, &limits) => Some(result),
        _ = stopped(stop.clone()) => None,
    };
    match started {
        Some(Ok(())) => {}
        Some(Err(error)) => return Err(error),
        None => {
            tracing::info!("stopped before Redis was reachable");
            return Ok(());
        }
    }

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|error| format!("cannot listen on {}: {error}", args.listen))?
        .tap_io(|tcp| {
            if let Err(error) = tcp.set_nodelay(true) {
                tracing::debug!(%error, "cannot set TCP_NODELAY");
            }
        });
    let state = AppState {
        store,
        pricing,
        admin_token,
        metrics: Default::default(),
        alerts,
    };
    tracing::info!(address = %args.listen, "listening");

    let server = axum::serve(listener, router(state))
        .with_graceful_shutdown(stopped(stop.clone()))
        .into_future();
    let grace_over = async {
        stopped(stop.clone()).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        result = server => result.map_err(|error| format!("server failed: {error}"))?,
        () = grace_over => {
            let grace_s = SHUTDOWN_GRACE.as_secs();
            tracing::warn!(grace_s, "connections still open after the grace period, stopping anyway");
        }
    }
    sighup_task.abort();
    watch_task.abort();
    tracing::info!("stopped");
    Ok(())
}

/// Runs one budget command against the configured Redis, prints its JSON on stdout or its
/// error on stderr, and returns the exit code.
async fn run_budget_command(args: &Args, command: &BudgetCommand) -> ExitCode {
    let options = StoreOptions {
        utc_offset_minutes: args.utc_offset_minutes,
        clock_shift_ms: 0,
    };
    let result = match Store::connect(&args.redis_target(), options) {
        Ok(store) => cli::run(command, &store).await,
        Err(error) => Err(error),
    };
    match result {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("spendfuse-sidecar budgets: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the scripts, retrying until Redis responds, then applies the budgets file.
async fn prepare_redis(store: &Store, limits: &[(BudgetId, BudgetUpdate)]) -> Result<(), String> {
    let mut delay = STARTUP_RETRY_MIN;
    let hashes = loop {
        match store.load_scripts().await {
            Ok(hashes) => break hashes,
            Err(error) => {
                tracing::warn!(
                    %error, redis = store.address(), retry_ms = delay.as_millis() as u64,
                    "Redis not reachable; retrying"
                );
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(STARTUP_RETRY_MAX);
    };
    let [reserve, settle, budget] = hashes;
    tracing::info!(
        redis = store.address(),
        reserve,
        settle,
        budget,
        "scripts loaded"
    );

    for (id, update) in limits {
        store
            .update_budget(id, update)
            .await
            .map_err(|error| format!("cannot apply the limits of budget {id}: {error}"))?;
    }
    tracing::info!(budgets = limits.len(), "budgets loaded");
    Ok(())
}

/// Resolves once the stop flag is set.
async fn stopped(mut stop: watch::Receiver<bool>) {
    // An error means the sender is gone, which only happens after it sent the stop.
    let _ = stop.wait_for(|stopping| *stopping).await;
}

/// Waits for SIGTERM or ctrl-c (SIGINT) and returns the signal's name.
async fn wait_for_signal() -> &'static str {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => "SIGINT",
        () = terminate => "SIGTERM",
    }
}
