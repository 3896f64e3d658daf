//! Thin entry point: parse the command line, initialise telemetry, run. Everything else lives in
//! the library so that tests and benches drive the same code.

use std::io::{Read, Write};
use std::process::ExitCode;

use authplane::config::{Cli, Command, Config};
use authplane::crypto::{self, Argon2Params};
use authplane::{Application, Signals};
use clap::Parser;

/// mimalloc in place of glibc's malloc: allocation and free were 15% of a request's CPU
/// (BENCHMARKS.md, the stack diet).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::HashPassword => hash_password(),
        Command::CheckConfig(args) => match Config::load(args) {
            Ok(cfg) => match serde_json::to_string_pretty(&cfg) {
                Ok(json) => {
                    // A closed pipe (`| head`) is not an error worth a panic.
                    let _ = writeln!(std::io::stdout(), "{json}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            },
            Err(e) => fail(&e),
        },
        Command::Serve(args) => {
            let cfg = match Config::load(args) {
                Ok(cfg) => cfg,
                Err(e) => return fail(&e),
            };
            // Telemetry first, outside the runtime: the OTLP exporter's client must not be built
            // inside one.
            let otlp = match authplane::telemetry::init_tracing(cfg.log_format, cfg.otlp_endpoint.as_deref()) {
                Ok(guard) => guard,
                Err(e) => return fail(&*e),
            };
            let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => return fail(&e),
            };
            let res = rt.block_on(serve(cfg));
            otlp.flush();
            match res {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "authplane failed");
                    fail(&format!("{e:#}"))
                }
            }
        }
    }
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    let mut signals = Signals::install()?;
    let app = Application::build(cfg).await?;
    let cancel = app.shutdown_token();
    let run = app.run();
    tokio::pin!(run);
    tokio::select! {
        res = &mut run => return res,
        () = signals.recv() => cancel.cancel(),
    }
    run.await
}

/// Reads one password from stdin (a trailing newline is not part of it) and prints its hash.
fn hash_password() -> ExitCode {
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        return fail(&e);
    }
    let password = input
        .strip_suffix('\n')
        .map(|p| p.strip_suffix('\r').unwrap_or(p))
        .unwrap_or(&input);
    if password.is_empty() {
        eprintln!("authplane: empty password on stdin");
        return ExitCode::FAILURE;
    }
    match crypto::hash_password(password, Argon2Params::DEFAULT) {
        Ok(phc) => {
            println!("{phc}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("authplane: {e}");
    ExitCode::FAILURE
}
