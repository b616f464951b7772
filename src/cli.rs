//! The `homeward` command line.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::gateway::Gateway;
use crate::message::SchemaRegistry;

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
    /// Print a new random 256-bit key (hex) for `[[encryption.keys]]`.
    Keygen,
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

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Scheduler cost per wake-up with many open timers.
    Timers {
        /// Open-timer counts to measure.
        #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
        sizes: Vec<usize>,
        /// Wake-ups measured per size.
        #[arg(long, default_value_t = 200)]
        wakeups: usize,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Check the hash chain; names the first broken record. Exit 0 intact, 1 broken.
    Verify {
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum OutboxCommand {
    /// Re-queue a `dead` or `rejected` message with a fresh delivery deadline.
    /// A running gateway picks it up within 30 seconds.
    Retry {
        /// The message id.
        id: String,
        #[arg(long, short)]
        config: PathBuf,
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
    let filter = tracing_subscriber::EnvFilter::try_from_env("HOMEWARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
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
            runtime()?.block_on(crate::demo::run(&certs, &agreements))?;
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
                    crate::agreement::is_known_country(cc),
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
        } => {
            let settings = Settings::load(&config)?;
            runtime()?.block_on(async {
                let sealer = crate::store::seal::Sealer::from_settings(&settings.encryption)?;
                let store = crate::store::Store::open(&settings.database.url, sealer).await?;
                let verdict = store.verify_audit().await?;
                store.close().await;
                Ok::<_, anyhow::Error>(match verdict {
                    crate::store::audit::Verified::Intact { rows } => {
                        println!("audit log intact: {rows} record(s)");
                        ExitCode::SUCCESS
                    }
                    crate::store::audit::Verified::Broken { seq, reason } => {
                        println!("audit log BROKEN at record {seq}: {reason}");
                        ExitCode::from(1)
                    }
                })
            })
        }
        Command::Purge { config, dry_run } => {
            let settings = Settings::load(&config)?;
            runtime()?.block_on(async {
                let registry = SchemaRegistry::embedded()?;
                let agreements =
                    crate::agreement::AgreementBook::load(&settings.agreements.dir, &registry)?;
                let sealer = crate::store::seal::Sealer::from_settings(&settings.encryption)?;
                let store = crate::store::Store::open(&settings.database.url, sealer).await?;
                let now = crate::clock::system().now_ms();
                let list = crate::store::retention::purge(&store, now, dry_run, |c| {
                    agreements.retention_days_of(c)
                })
                .await?;
                store.close().await;
                let verb = if dry_run { "would purge" } else { "purged" };
                for c in &list {
                    println!(
                        "{verb} {}: {} since {}, {} message(s)",
                        c.case_ref,
                        c.state,
                        crate::clock::rfc3339_ms(c.last_activity),
                        c.messages
                    );
                }
                println!("{} case(s) {verb}", list.len());
                Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
            })
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
            println!("{}", crate::local_api::hash_token(token));
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { files, json } => validate(&files, json),
        Command::Bench {
            command:
                BenchCommand::Timers {
                    sizes,
                    wakeups,
                    json,
                },
        } => {
            let report = runtime()?.block_on(crate::bench::timers(&sizes, wakeups.max(1)))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("timer scheduler, median cost per wake-up:");
                for r in report["results"].as_array().into_iter().flatten() {
                    println!(
                        "  {:>8} open timers: {:>8.1} µs firing one due timer, {:>8.1} µs idle",
                        r["open_timers"],
                        r["median_us_per_wakeup_firing_one"].as_f64().unwrap_or(0.0),
                        r["median_us_per_idle_wakeup"].as_f64().unwrap_or(0.0)
                    );
                }
                println!(
                    "  ratio largest/smallest: {:.2}",
                    report["ratio_largest_to_smallest"].as_f64().unwrap_or(0.0)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Outbox {
            command: OutboxCommand::Retry { id, config },
        } => {
            let settings = Settings::load(&config)?;
            let id = uuid::Uuid::parse_str(&id)
                .context("the message id must be a UUID")?
                .to_string();
            runtime()?.block_on(async {
                let sealer = crate::store::seal::Sealer::from_settings(&settings.encryption)?;
                let store = crate::store::Store::open(&settings.database.url, sealer).await?;
                let now = crate::clock::system().now_ms();
                let deadline = now + settings.delivery.deadline_hours as i64 * 3_600_000;
                let done = store.requeue(&id, now, deadline).await?;
                let state = store.outbound(&id).await?.map(|r| r.state.as_str());
                store.close().await;
                match (done, state) {
                    (true, _) => {
                        println!("{id}: re-queued");
                        Ok(ExitCode::SUCCESS)
                    }
                    (false, None) => {
                        eprintln!("{id}: no such message in the outbox");
                        Ok(ExitCode::from(1))
                    }
                    (false, Some(s)) => {
                        eprintln!("{id}: message is `{s}`; only dead or rejected messages can be re-queued");
                        Ok(ExitCode::from(1))
                    }
                }
            })
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let gateway = Gateway::build(settings, crate::clock::system()).await?;
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

fn validate(files: &[PathBuf], json: bool) -> anyhow::Result<ExitCode> {
    let registry = SchemaRegistry::embedded()?;
    anyhow::ensure!(
        !files.is_empty(),
        "name at least one file, or - for standard input"
    );
    let mut worst = 0u8;
    let mut reports = Vec::new();
    for file in files {
        let name = file.display().to_string();
        let text = if name == "-" {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).map(|_| s)
        } else {
            std::fs::read_to_string(file)
        };
        let (status, problems) = match text {
            Err(e) => (
                2,
                vec![serde_json::json!({"message": format!("cannot read: {e}")})],
            ),
            Ok(text) => match serde_json::from_str::<serde_json::Value>(&text) {
                Err(e) => (
                    1,
                    vec![
                        serde_json::json!({"keyword": "json", "message": format!("not valid JSON: {e}")}),
                    ],
                ),
                Ok(doc) => match registry.validate(&doc) {
                    Ok(_) => (0, vec![]),
                    Err(e) => (
                        1,
                        e.details()
                            .into_iter()
                            .map(|d| serde_json::to_value(d).unwrap_or_default())
                            .collect(),
                    ),
                },
            },
        };
        worst = worst.max(status);
        reports.push(serde_json::json!({"file": name, "valid": status == 0, "readable": status != 2, "violations": problems}));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        for r in &reports {
            let file = r["file"].as_str().unwrap_or_default();
            if r["valid"].as_bool() == Some(true) {
                println!("{file}: valid");
                continue;
            }
            println!(
                "{file}: {}",
                if r["readable"].as_bool() == Some(true) {
                    "INVALID"
                } else {
                    "UNREADABLE"
                }
            );
            for v in r["violations"].as_array().into_iter().flatten() {
                let pointer = v["pointer"].as_str().unwrap_or("");
                let keyword = v["keyword"].as_str().unwrap_or("");
                let message = v["message"].as_str().unwrap_or("");
                println!(
                    "  {} [{}] {}",
                    if pointer.is_empty() { "/" } else { pointer },
                    keyword,
                    message
                );
            }
        }
    }
    Ok(ExitCode::from(worst))
}
