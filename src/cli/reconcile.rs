//! `homeward reconcile`: this node's count of a corridor beside the
//! peer's, cell by cell, naming the messages one side holds and the other
//! does not. Exit 0 both agree, 1 they differ, 2 no comparison could be made
//! (bad input, the peer down or refusing, a tally that does not verify).

use std::path::Path;
use std::process::ExitCode;

use crate::app::reconcile::{self, Outcome};
use crate::config::Settings;
use crate::credentials::Credentials;
use crate::domain::agreement::AgreementBook;
use crate::domain::message::SchemaRegistry;

pub(super) fn run(config: &Path, peer: &str, year: i32, json: bool) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(config)?;
    let peer = peer.to_ascii_uppercase();
    let registry = SchemaRegistry::embedded()?;
    let agreements = AgreementBook::load(&settings.agreements.dir, &registry)?;
    let credentials = Credentials::load(&settings)?;
    let year = year.to_string();
    let rt = super::runtime()?;
    let outcome = rt.block_on(async {
        let store = super::store_ops::open_store(&settings).await?;
        crate::app::statistics::backfill(&store).await?;
        let outcome = reconcile::with_peer(
            &settings,
            &credentials,
            &agreements,
            &store,
            &peer,
            (&year, &year),
        )
        .await;
        store.close().await;
        anyhow::Ok(outcome)
    })?;
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            eprintln!("reconcile: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&outcome).expect("an outcome serializes")
        );
    } else {
        print!("{}", text(&outcome));
    }
    Ok(if outcome.comparison.agrees() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn text(o: &Outcome) -> String {
    let c = &o.comparison;
    let mut out = format!(
        "corridor {} from {} to {}: {} as {} counts it beside {}'s tally ({})\n",
        c.corridor,
        c.from,
        c.to,
        o.node,
        o.node,
        o.peer,
        if o.signed {
            "signed, signature verified"
        } else {
            "unsigned"
        }
    );
    for a in &c.agreed {
        out.push_str(&format!(
            "  agree    {} {:<24} {:>6}\n",
            a.key.month, a.key.message_type, a.count
        ));
    }
    for d in &c.differing {
        out.push_str(&format!(
            "  DIFFER   {} {:<24} {:>6} here, {} at {}\n",
            d.key.month, d.key.message_type, d.ours, d.theirs, o.peer
        ));
        for id in &d.only_ours {
            out.push_str(&format!("           only here: {id}\n"));
        }
        for id in &d.only_theirs {
            out.push_str(&format!("           only at {}: {id}\n", o.peer));
        }
    }
    out.push_str(&if c.agrees() {
        format!("both sides agree on {} cells\n", c.agreed.len())
    } else {
        format!(
            "{} cells agree, {} differ\n",
            c.agreed.len(),
            c.differing.len()
        )
    });
    out
}
