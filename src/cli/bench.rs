//! `homeward bench`: the benchmarks (figures, not pass/fail) and how their
//! reports print.

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub(super) enum BenchCommand {
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
        /// Run both gateways without signing keys (to measure what
        /// signatures cost).
        #[arg(long)]
        unsigned: bool,
        #[arg(long)]
        json: bool,
    },
    /// A backlog for an unreachable peer (default 100,000 messages), then
    /// the peer returns: sender memory, the time from the peer's start to
    /// its last receipt, and drain rate per tenth of the backlog. Run from
    /// the repository root.
    Backlog {
        #[arg(long, default_value_t = 100_000)]
        messages: usize,
        /// Run both gateways on this PostgreSQL server instead of SQLite.
        #[arg(long)]
        database_url: Option<String>,
        /// Seconds the peer stays down after the backlog is queued (with
        /// the shipped backoff, 120 s lets retries reach their 60 s cap).
        #[arg(long, default_value_t = 0.0)]
        outage_seconds: f64,
        /// The sender's `delivery.initial_backoff_ms` (shipped: 500).
        #[arg(long, default_value_t = 50)]
        initial_backoff_ms: u64,
        /// The sender's `delivery.max_backoff_ms` (shipped: 60000).
        #[arg(long, default_value_t = 1000)]
        max_backoff_ms: u64,
    },
    /// Screening volumes through `POST /v1/messages/batch` (default
    /// 50,000 messages in batches of 500): time from the first batch to the
    /// peer's last receipt. Run from the repository root.
    Screening {
        #[arg(long, default_value_t = 50_000)]
        messages: usize,
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// Batches in flight at once.
        #[arg(long, default_value_t = 2)]
        concurrency: usize,
        /// Run both gateways on this PostgreSQL server instead of SQLite.
        #[arg(long)]
        database_url: Option<String>,
    },
    /// What signing an envelope and verifying its signature cost.
    Sign {
        /// Signatures made and verified per round (5 rounds).
        #[arg(long, default_value_t = 2000)]
        iterations: usize,
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

pub(super) fn run(command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Backlog {
            messages,
            database_url,
            outage_seconds,
            initial_backoff_ms,
            max_backoff_ms,
        } => {
            let opts = crate::tools::bench::BacklogOptions {
                messages,
                database_url,
                outage: std::time::Duration::from_secs_f64(outage_seconds.clamp(0.0, 86_400.0)),
                initial_backoff_ms,
                max_backoff_ms,
            };
            let report = super::runtime()?.block_on(crate::tools::bench::backlog(&opts))?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::E2e {
            messages,
            concurrency,
            rate,
            rate_seconds,
            runs,
            database_url,
            unsigned,
            json,
        } => {
            let opts = crate::tools::bench::E2eOptions {
                unsigned,
                messages,
                concurrency,
                rate,
                rate_seconds,
                runs: runs.max(1),
                database_url,
            };
            let report = super::runtime()?.block_on(crate::tools::bench::e2e(&opts))?;
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
        BenchCommand::Screening {
            messages,
            batch,
            concurrency,
            database_url,
        } => {
            let opts = crate::tools::bench::ScreeningOptions {
                messages,
                batch,
                concurrency,
                database_url,
            };
            let report = super::runtime()?.block_on(crate::tools::bench::screening(&opts))?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Sign { iterations } => {
            let report = crate::tools::bench::sign(iterations.max(1))?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Timers {
            sizes,
            wakeups,
            json,
        } => {
            let report =
                super::runtime()?.block_on(crate::tools::bench::timers(&sizes, wakeups.max(1)))?;
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
    }
}
