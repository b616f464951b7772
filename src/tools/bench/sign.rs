//! `homeward bench sign`: what a signature costs per message, alone: the
//! sender's signing of an envelope and the receiver's verification (form,
//! Ed25519, the chain to the sender's CA; and with the chain remembered, as
//! the gateway does), on the bench's own message.

use std::time::Instant;

use rustls::pki_types::UnixTime;
use serde_json::{Value, json};

use super::procs::bench_message;
use crate::signing::{self, Purpose, Signer};

pub fn sign(iterations: usize) -> anyhow::Result<Value> {
    let dir = tempfile::tempdir()?;
    let paths = crate::tls::pki::write_dev_pki(dir.path(), &["TH"], 30)?;
    let th = &paths[0];
    let signer = Signer::load(&th.sign_cert, &th.sign_key)?;
    let ca = crate::tls::load_certs(&th.ca_cert)?;
    let body = bench_message(1).to_string();
    let now = [UnixTime::now()];
    // Several rounds; the median round is reported.
    let mut sign_us = Vec::new();
    let mut verify_us = Vec::new();
    let mut cached_us = Vec::new();
    let verifier = signing::Verifier::default();
    let mut jws = String::new();
    for _ in 0..5 {
        let start = Instant::now();
        for _ in 0..iterations {
            jws = signer.sign(Purpose::Envelope, body.as_bytes());
        }
        sign_us.push(start.elapsed().as_secs_f64() * 1e6 / iterations as f64);
        let start = Instant::now();
        for _ in 0..iterations {
            signing::verify(
                &jws,
                Purpose::Envelope,
                body.as_bytes(),
                &ca,
                &[],
                &now,
                "TH",
            )?;
        }
        verify_us.push(start.elapsed().as_secs_f64() * 1e6 / iterations as f64);
        let start = Instant::now();
        for _ in 0..iterations {
            verifier.verify_now(&jws, Purpose::Envelope, body.as_bytes(), &ca, &[], "TH")?;
        }
        cached_us.push(start.elapsed().as_secs_f64() * 1e6 / iterations as f64);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Ok(json!({
        "envelope_bytes": body.len(),
        "signature_bytes": jws.len(),
        "iterations_per_round": iterations,
        "sign_us_median": median(sign_us),
        "verify_us_median": median(verify_us),
        "verify_chain_remembered_us_median": median(cached_us),
    }))
}
