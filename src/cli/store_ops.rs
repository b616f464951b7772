//! Commands that work on a gateway's store directly (with the gateway
//! stopped or beside it): the audit chain, retention, the outbox, timers.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use crate::config::Settings;
use crate::domain::message::SchemaRegistry;

#[derive(Subcommand, Debug)]
pub(super) enum AuditCommand {
    /// Check the hash chain; names the first broken record. Exit 0 intact, 1 broken.
    Verify {
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub(super) enum OutboxCommand {
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
pub(super) enum TimersCommand {
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

pub(super) async fn open_store(settings: &Settings) -> anyhow::Result<crate::store::Store> {
    let sealer = crate::store::seal::Sealer::from_settings(&settings.encryption)?;
    Ok(crate::store::Store::open(&settings.database.url, sealer).await?)
}

pub(super) fn print_outbox_row(r: &crate::store::OutboxRow) {
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

pub(super) fn outbox_command(command: OutboxCommand) -> anyhow::Result<ExitCode> {
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
    super::runtime()?.block_on(async {
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

pub(super) fn timers_command(command: TimersCommand) -> anyhow::Result<ExitCode> {
    let TimersCommand::List {
        config,
        state,
        limit,
    } = command;
    let settings = Settings::load(&config)?;
    super::runtime()?.block_on(async {
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

/// `homeward audit verify`: checks the hash chain of the audit log.
pub(super) fn verify_audit(config: &Path) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(config)?;
    super::runtime()?.block_on(async {
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

/// `homeward purge`: payloads of cases past their retention (or, dry, the list).
pub(super) fn purge(config: &Path, dry_run: bool) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(config)?;
    super::runtime()?.block_on(async {
        let registry = SchemaRegistry::embedded()?;
        let agreements =
            crate::domain::agreement::AgreementBook::load(&settings.agreements.dir, &registry)?;
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
