//! The `homeward` command line.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::domain::message::SchemaRegistry;
use crate::gateway::Gateway;

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
    /// Two gateway processes on 127.0.0.1 (mutual TLS, SQLite): accepted/s,
    /// delivered/s, submit-to-receipt latency, RSS, CPU per 1,000 messages.
    /// Run from the repository root.
    E2e {
        #[arg(long, default_value_t = 20_000)]
        messages: usize,
        /// Concurrent submitters, one measurement each.
        #[arg(long, value_delimiter = ',', default_value = "1,64")]
        concurrency: Vec<usize>,
        /// Offered rate (messages/s) for the fixed-rate latency run.
        #[arg(long, default_value_t = 1000)]
        rate: u32,
        #[arg(long, default_value_t = 5)]
        rate_seconds: u32,
        /// Runs per figure (the median is reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Run both gateways on this PostgreSQL server, each in a fresh
        /// database (created and dropped by the bench), instead of SQLite.
        #[arg(long)]
        database_url: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// A backlog for an unreachable peer (default 100,000 messages), then
    /// the peer returns: sender memory and drain rate per tenth of the
    /// backlog. Run from the repository root.
    Backlog {
        #[arg(long, default_value_t = 100_000)]
        messages: usize,
        /// Run both gateways on this PostgreSQL server instead of SQLite.
        #[arg(long)]
        database_url: Option<String>,
    },
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
    /// Outbound messages, newest first.
    List {
        #[arg(long, short)]
        config: PathBuf,
        /// Only this state: queued, delivering, delivered, rejected, dead.
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// One message: state, attempts, last error, receipt.
    Show {
        id: String,
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Re-queue a `dead` or `rejected` message with a fresh delivery deadline.
    /// A running gateway picks it up within 30 seconds.
    Retry {
        /// The message id.
        id: String,
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Stop delivering a queued message (it becomes `dead`, reason cancelled).
    Cancel {
        id: String,
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum TimersCommand {
    /// Deadlines, soonest due first.
    List {
        #[arg(long, short)]
        config: PathBuf,
        /// open, breached, met or overdue.
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

async fn open_store(settings: &Settings) -> anyhow::Result<crate::store::Store> {
    let sealer = crate::store::seal::Sealer::from_settings(&settings.encryption)?;
    Ok(crate::store::Store::open(&settings.database.url, sealer).await?)
}

fn print_outbox_row(r: &crate::store::OutboxRow) {
    println!(
        "{}  {}  {:<24} -> {}  {:<10} attempts {:<3} submitted {}",
        r.message_id,
        r.case_ref,
        r.message_type,
        r.peer,
        r.state.as_str(),
        r.attempts,
        crate::clock::rfc3339_ms(r.submitted_at)
    );
}

fn outbox_command(command: OutboxCommand) -> anyhow::Result<ExitCode> {
    let (config, id) = match &command {
        OutboxCommand::List { config, .. } => (config.clone(), None),
        OutboxCommand::Show { config, id }
        | OutboxCommand::Retry { config, id }
        | OutboxCommand::Cancel { config, id } => (
            config.clone(),
            Some(
                uuid::Uuid::parse_str(id)
                    .context("the message id must be a UUID")?
                    .to_string(),
            ),
        ),
    };
    let settings = Settings::load(&config)?;
    runtime()?.block_on(async {
        let store = open_store(&settings).await?;
        let now = crate::clock::system().now_ms();
        let id = id.unwrap_or_default();
        let code = match command {
            OutboxCommand::List { state, limit, .. } => {
                for r in store
                    .outbox_list(state.as_deref(), limit.clamp(1, 10_000))
                    .await?
                {
                    print_outbox_row(&r);
                }
                ExitCode::SUCCESS
            }
            OutboxCommand::Show { .. } => match store.outbound(&id).await? {
                Some(r) => {
                    print_outbox_row(&r);
                    if let Some(e) = &r.last_error {
                        println!("  last error: {e}");
                    }
                    if let Some(receipt) = &r.receipt {
                        println!("  receipt: {receipt}");
                    }
                    ExitCode::SUCCESS
                }
                None => {
                    eprintln!("{id}: no such message in the outbox");
                    ExitCode::from(1)
                }
            },
            OutboxCommand::Retry { .. } => {
                let deadline = now + settings.delivery.deadline_hours as i64 * 3_600_000;
                if store.requeue(&id, now, deadline).await? {
                    println!("{id}: re-queued");
                    ExitCode::SUCCESS
                } else {
                    let state = store.outbound(&id).await?.map(|r| r.state.as_str());
                    eprintln!(
                        "{id}: {}",
                        match state {
                            None => "no such message in the outbox".to_string(),
                            Some(s) => format!(
                                "message is `{s}`; only dead or rejected messages can be re-queued"
                            ),
                        }
                    );
                    ExitCode::from(1)
                }
            }
            OutboxCommand::Cancel { .. } => {
                let who = std::env::var("USER").unwrap_or_else(|_| "an operator".into());
                if store.cancel(&id, &who).await? {
                    println!("{id}: cancelled");
                    ExitCode::SUCCESS
                } else {
                    eprintln!("{id}: only queued or delivering messages can be cancelled");
                    ExitCode::from(1)
                }
            }
        };
        store.close().await;
        Ok(code)
    })
}

fn timers_command(command: TimersCommand) -> anyhow::Result<ExitCode> {
    let TimersCommand::List {
        config,
        state,
        limit,
    } = command;
    let settings = Settings::load(&config)?;
    runtime()?.block_on(async {
        let store = open_store(&settings).await?;
        let now = crate::clock::system().now_ms();
        let overdue = state.as_deref() == Some("overdue");
        let filter = crate::store::timers::TimerFilter {
            state: state.filter(|s| s != "overdue"),
            peer: None,
            due_before: overdue.then_some(now),
            after_id: 0,
            limit: limit.clamp(1, 10_000),
        };
        let mut timers = store.timers(&filter).await?;
        timers.retain(|t| !overdue || t.state != "met");
        timers.sort_by_key(|t| t.due_at);
        for t in &timers {
            println!(
                "{}  {:<16} {:<24} -> {:<24} peer {}  due {}  {}",
                t.case_ref,
                t.side,
                t.message_type,
                t.expected_type,
                t.peer,
                crate::clock::rfc3339_ms(t.due_at),
                t.state
            );
        }
        store.close().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// `homeward check-config`: everything a start would load, plus
/// certificates that expire within 30 days.
fn check_config(config: &std::path::Path) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(config)?;
    let registry = SchemaRegistry::embedded()?;
    let agreements =
        crate::domain::agreement::AgreementBook::load(&settings.agreements.dir, &registry)?;
    let mut problems = 0;
    let now = time::OffsetDateTime::now_utc();
    let mut certs = vec![
        ("tls.cert", settings.tls.cert.clone()),
        ("tls.api_cert", settings.tls.api_cert.clone()),
    ];
    for p in &settings.peers {
        certs.push(("peers[].ca", p.ca.clone()));
    }
    if let Some(ca) = &settings.local_api.client_ca {
        certs.push(("local_api.client_ca", ca.clone()));
    }
    for (key, path) in certs {
        for cert in crate::tls::load_certs(&path)? {
            let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
                .map_err(|e| anyhow::anyhow!("{key} `{}`: {e}", path.display()))?;
            let not_after = parsed.validity().not_after.to_datetime();
            let days = (not_after - now).whole_days();
            let subject = parsed.subject().to_string();
            if days < 0 {
                println!(
                    "EXPIRED  {key} `{}` ({subject}) expired {}",
                    path.display(),
                    not_after.date()
                );
                problems += 1;
            } else if days < 30 {
                println!(
                    "EXPIRING {key} `{}` ({subject}) expires in {days} days",
                    path.display()
                );
                problems += 1;
            } else {
                println!(
                    "ok       {key} `{}` ({subject}) valid {days} more days",
                    path.display()
                );
            }
        }
    }
    let identity = crate::tls::Identity::load(&settings.tls.cert, &settings.tls.key)?;
    anyhow::ensure!(
        identity.node().as_deref() == Some(settings.node.country.as_str()),
        "tls.cert does not name urn:homeward:node:{}",
        settings.node.country
    );
    for p in &settings.peers {
        match agreements.between(&settings.node.country, &p.country) {
            Some(a) => println!(
                "ok       peer {} under agreement `{}` ({})",
                p.country, a.id, a.year
            ),
            None => {
                println!(
                    "WARNING  peer {} is configured but no agreement covers it",
                    p.country
                );
                problems += 1;
            }
        }
    }
    println!(
        "{}: {} schema types, {} agreements, {} peers, {} tokens{}",
        config.display(),
        registry.schemas().count(),
        agreements.all().len(),
        settings.peers.len(),
        settings.tokens.len(),
        if problems == 0 {
            String::new()
        } else {
            format!("; {problems} problem(s)")
        }
    );
    Ok(if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
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
        } => {
            let settings = Settings::load(&config)?;
            runtime()?.block_on(async {
                let store = open_store(&settings).await?;
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
                let agreements = crate::domain::agreement::AgreementBook::load(
                    &settings.agreements.dir,
                    &registry,
                )?;
                let store = open_store(&settings).await?;
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
            println!("{}", crate::domain::access::hash_token(token));
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { files, json } => validate(&files, json),
        Command::Bench {
            command:
                BenchCommand::Backlog {
                    messages,
                    database_url,
                },
        } => {
            let opts = crate::tools::bench::BacklogOptions {
                messages,
                database_url,
            };
            let report = runtime()?.block_on(crate::tools::bench::backlog(&opts))?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            command:
                BenchCommand::E2e {
                    messages,
                    concurrency,
                    rate,
                    rate_seconds,
                    runs,
                    database_url,
                    json,
                },
        } => {
            let opts = crate::tools::bench::E2eOptions {
                messages,
                concurrency,
                rate,
                rate_seconds,
                runs: runs.max(1),
                database_url,
            };
            let report = runtime()?.block_on(crate::tools::bench::e2e(&opts))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{}", report["benchmark"].as_str().unwrap_or(""));
                for r in report["saturation"].as_array().into_iter().flatten() {
                    let f = |k: &str| r[k].as_f64().unwrap_or(0.0);
                    println!(
                        "  W={:<3} N={}: accepted {:.0}/s, delivered {:.0}/s, latency p50 {:.1} ms p99 {:.1} ms, \
                         CPU {:.2} s per 1,000, {:.1} context switches per message, RSS idle {:.1} MB peak {:.1} MB",
                        r["concurrency"],
                        r["messages"],
                        f("accepted_per_s"),
                        f("delivered_per_s"),
                        f("latency_ms_p50"),
                        f("latency_ms_p99"),
                        f("cpu_seconds_per_1000_messages_both_gateways"),
                        f("context_switches_per_message_both_gateways"),
                        f("idle_rss_mb_max_gateway"),
                        f("peak_rss_mb_max_gateway")
                    );
                }
                let f = &report["fixed_rate"];
                println!(
                    "  offered {}/s (achieved {:.0}/s): latency p50 {:.1} ms p99 {:.1} ms",
                    f["offered_per_s"],
                    f["achieved_per_s"].as_f64().unwrap_or(0.0),
                    f["latency_ms_p50"].as_f64().unwrap_or(0.0),
                    f["latency_ms_p99"].as_f64().unwrap_or(0.0)
                );
                println!(
                    "  disk: {:.0} fsyncs/s (4 KiB append + fdatasync in the bench's directory)",
                    report["disk_fsyncs_per_s"].as_f64().unwrap_or(0.0)
                );
                println!("  (median of {} runs)", report["runs_per_figure"]);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            command:
                BenchCommand::Timers {
                    sizes,
                    wakeups,
                    json,
                },
        } => {
            let report =
                runtime()?.block_on(crate::tools::bench::timers(&sizes, wakeups.max(1)))?;
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
        Command::Outbox { command } => outbox_command(command),
        Command::Timers { command } => timers_command(command),
        Command::CheckConfig { config } => check_config(&config),
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
