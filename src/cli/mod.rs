//! The `homeward` command line: parsing, logging set-up, and `serve` with
//! its signals. Each family of subcommands lives in its own module.

mod bench;
mod check;
mod evidence;
mod reconcile;
mod reload;
mod report;
mod store_ops;

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::gateway::Gateway;

use bench::BenchCommand;
use evidence::EvidenceCommand;
use store_ops::{AuditCommand, OutboxCommand, TimersCommand};

#[derive(Parser, Debug)]
#[command(
    name = "homeward",
    version,
    about = "Cross-border repatriation message broker"
)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one gateway.
    Serve {
        /// Node configuration file, e.g. config/nodes/kh.toml.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Start four gateways on 127.0.0.1 and run one case between them.
    Demo {
        /// Development PKI made by `homeward dev-certs`.
        #[arg(long, default_value = "certs-dev")]
        certs: PathBuf,
        /// Agreements directory.
        #[arg(long, default_value = "config/agreements")]
        agreements: PathBuf,
    },
    /// Generate the development PKI (one CA per country). Never for production.
    DevCerts {
        #[arg(long, default_value = "certs-dev")]
        out: PathBuf,
        /// Countries to generate.
        #[arg(long, value_delimiter = ',', default_value = "KH,TH,VN,MY")]
        countries: Vec<String>,
        /// Validity in days.
        #[arg(long, default_value_t = 825)]
        days: i64,
    },
    /// Benchmarks (figures, not pass/fail).
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Outbox operations on a gateway's store.
    Outbox {
        #[command(subcommand)]
        command: OutboxCommand,
    },
    /// Deadlines on a gateway's store.
    Timers {
        #[command(subcommand)]
        command: TimersCommand,
    },
    /// Load configuration, agreements, schemas and certificates; report what
    /// is wrong or expiring within 30 days. Exit 0 fine, 1 problems, 2 unusable.
    CheckConfig {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Purge payloads of cases closed or withdrawn longer ago than their
    /// agreement's retention (metadata and audit are kept).
    Purge {
        #[arg(long, short)]
        config: PathBuf,
        /// Only list what would be purged.
        #[arg(long)]
        dry_run: bool,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// A case's evidence bundle: export it from a node's store, or verify
    /// one offline with the countries' CA certificates.
    Evidence {
        #[command(subcommand)]
        command: EvidenceCommand,
    },
    /// The year's de-identified statistics, in the shape of the annual
    /// reports (small counts suppressed), from this node's store.
    Report {
        #[arg(long, short)]
        config: PathBuf,
        /// The calendar year, e.g. 2026.
        #[arg(long)]
        year: i32,
        #[arg(long, value_enum, default_value = "md")]
        format: crate::app::report::Format,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Compare this node's count of its corridor with a peer's, per month
    /// and message type, over a year, naming the messages one side holds and
    /// the other does not. Exit 0 agree, 1 differ, 2 no comparison.
    Reconcile {
        #[arg(long, short)]
        config: PathBuf,
        /// The peer country, e.g. TH.
        #[arg(long)]
        peer: String,
        #[arg(long)]
        year: i32,
        /// Print the comparison as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make the running gateway reread its certificates, keys, peer CAs,
    /// CRLs and agreements (as `SIGHUP` does): checked here first, and not
    /// sent if they would be refused. Exit 0 sent, 1 refused, 2 no gateway.
    Reload {
        #[arg(long)]
        config: PathBuf,
        /// The gateway's process id; found from the SQLite file's lock by
        /// default (needed with PostgreSQL).
        #[arg(long)]
        pid: Option<u32>,
    },
    /// Print a new random 256-bit key (hex) for `[[encryption.keys]]`.
    Keygen,
    /// Print the OpenAPI 3.1 document of the local and peer APIs (the one
    /// `GET /openapi.json` serves), to generate clients or test against.
    Openapi,
    /// Print the SHA-256 to put in a `[[tokens]]` entry for a bearer token
    /// read from standard input.
    TokenHash,
    /// Validate message files (envelope and payload) against the schemas.
    /// `-` reads standard input. Exit 0 valid, 1 invalid, 2 unreadable.
    Validate {
        files: Vec<PathBuf>,
        /// Machine-readable report.
        #[arg(long)]
        json: bool,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Serve { .. } => "info",
        _ => "warn",
    };
    init_tracing(cli.log_format, default_level);
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing(format: LogFormat, default_level: &str) {
    crate::telemetry::init_tracing(matches!(format, LogFormat::Json), default_level);
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { config } => {
            let settings = Settings::load(&config)?;
            runtime()?.block_on(serve(settings))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { certs, agreements } => {
            runtime()?.block_on(crate::tools::demo::run(&certs, &agreements))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::DevCerts {
            out,
            countries,
            days,
        } => {
            let list: Vec<&str> = countries.iter().map(String::as_str).collect();
            for cc in &list {
                anyhow::ensure!(
                    crate::domain::agreement::is_known_country(cc),
                    "unknown country `{cc}`"
                );
            }
            let paths = crate::tls::pki::write_dev_pki(&out, &list, days)?;
            for p in paths {
                println!(
                    "{}",
                    p.peer_cert
                        .parent()
                        .map(|d| d.display().to_string())
                        .unwrap_or_default()
                );
            }
            println!(
                "development PKI written to {} (for development only)",
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command: AuditCommand::Verify { config },
        } => store_ops::verify_audit(&config),
        Command::Purge { config, dry_run } => store_ops::purge(&config, dry_run),
        Command::Openapi => {
            println!("{}", crate::http::local::openapi_document());
            Ok(ExitCode::SUCCESS)
        }
        Command::Keygen => {
            println!("{}", crate::store::seal::new_key_hex());
            Ok(ExitCode::SUCCESS)
        }
        Command::TokenHash => {
            let mut token = String::new();
            std::io::stdin()
                .read_to_string(&mut token)
                .context("reading the token from stdin")?;
            let token = token.trim();
            anyhow::ensure!(!token.is_empty(), "no token on standard input");
            println!("{}", crate::domain::access::hash_token(token));
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { files, json } => check::validate(&files, json),
        Command::Bench { command } => bench::run(command),
        Command::Evidence { command } => evidence::run(command),
        Command::Outbox { command } => store_ops::outbox_command(command),
        Command::Timers { command } => store_ops::timers_command(command),
        Command::CheckConfig { config } => check::check_config(&config),
        Command::Reload { config, pid } => reload::request(&config, pid),
        Command::Reconcile {
            config,
            peer,
            year,
            json,
        } => reconcile::run(&config, &peer, year, json),
        Command::Report {
            config,
            year,
            format,
            out,
        } => report::run(&config, year, format, out.as_deref()),
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    // Before anything else: a SIGHUP that arrives while starting must not
    // end the process (its default action).
    let hangups = reload::hangups();
    let gateway = Gateway::build(settings, crate::clock::system()).await?;
    reload::on_hangup(hangups, gateway.node().clone());
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested; draining");
        trigger.cancel();
    });
    gateway.run_until_stopped(shutdown).await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
