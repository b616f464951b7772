//! `homeward report`: the year's statistics from this node's store, as
//! Markdown, CSV or JSON. Exit 0 written, 2 unusable input.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::app::report::{self, Format};
use crate::config::Settings;

pub(super) fn run(
    config: &Path,
    year: i32,
    format: Format,
    out: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(config)?;
    if !(1970..=9998).contains(&year) {
        eprintln!("--year {year}: not a calendar year this report can count");
        return Ok(ExitCode::from(2));
    }
    let rt = super::runtime()?;
    let report = rt.block_on(async {
        let store = super::store_ops::open_store(&settings).await?;
        // A store migrated by this binary but not yet served has no facts
        // for its older messages: fill them first, as a start would.
        crate::app::statistics::backfill(&store).await?;
        let report =
            report::build(&store, &settings.node.country, year, settings.statistics.k).await;
        store.close().await;
        anyhow::Ok(report?)
    })?;
    let text = report.render(format);
    match out {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
