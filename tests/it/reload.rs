//! Revocation and rotation without a restart: a CRL put in force by a
//! reload refuses the revoked peer at its next handshake (both ports) and
//! its revoked signing key at its next message; a rotated TLS certificate
//! is what new handshakes see, and nothing is lost across the rotation; a
//! file that does not load keeps the material in force.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use homeward::app::reload::reload;
use homeward::gateway::RunningGateway;
use homeward::tls;
use serde_json::Value;

use crate::support::*;

/// KH and TH with manual workers; KH applies `crl` (a file, initially a
/// list from TH's CA that revokes nothing) to TH, and does not watch its
/// files (the tests reload it themselves).
struct Revocable {
    pki: Pki,
    _data: tempfile::TempDir,
    crl: PathBuf,
    kh: RunningGateway,
    th: RunningGateway,
    kh_worker: Arc<homeward::app::delivery::Worker>,
    th_worker: Arc<homeward::app::delivery::Worker>,
}

impl Revocable {
    async fn start() -> Self {
        let pki = Pki::new();
        let data = tempfile::tempdir().expect("tempdir");
        let crl = data.path().join("th.crl.pem");
        std::fs::write(&crl, pki.crl("TH", &[])).unwrap();
        let (kh_l, th_l) = (bind(), bind());
        let mut kh_settings =
            settings_for(&pki, "KH", data.path(), &kh_l, &[("TH", th_l.peer_addr())]);
        kh_settings.peers[0].crl = Some(crl.clone());
        kh_settings.tls.watch_interval_ms = 0;
        let th_settings = settings_for(&pki, "TH", data.path(), &th_l, &[("KH", kh_l.peer_addr())]);
        let (kh, kh_worker) = start_manual(kh_settings, kh_l).await;
        let (th, th_worker) = start_manual(th_settings, th_l).await;
        Self {
            pki,
            _data: data,
            crl,
            kh,
            th,
            kh_worker,
            th_worker,
        }
    }

    fn th_api(&self) -> Api {
        api(&self.pki, "TH", self.th.api_addr)
    }

    fn kh_api(&self) -> Api {
        api(&self.pki, "KH", self.kh.api_addr)
    }

    /// Writes KH's CRL for TH revoking `revoked` and reloads KH.
    fn revoke(&self, revoked: &[&Path]) {
        std::fs::write(&self.crl, self.pki.crl("TH", revoked)).unwrap();
        reload(&self.kh.node, "test").expect("the new CRL loads");
    }

    async fn metrics(&self) -> String {
        self.kh_api()
            .with_token(OPERATOR_TOKEN)
            .metrics_text()
            .await
            .unwrap()
            .text
    }

    async fn stop(self) {
        self.th.stop().await;
        self.kh.stop().await;
    }
}

async fn submit(api: &Api, from: &str, to: &str, n: usize) -> String {
    let m = referral(from, to, &case_ref(from, to, n), n);
    let r = api.submit(&m).await.unwrap();
    assert_eq!(r.status, 202, "{}", r.body);
    m["message_id"].as_str().unwrap().to_string()
}

async fn state(api: &Api, id: &str) -> Value {
    api.message(id).await.unwrap().body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_node_certificate_is_refused_at_the_next_handshake_once_reloaded() {
    let g = Revocable::start().await;
    let (th, kh) = (g.th_api(), g.kh_api());
    let first = submit(&th, "TH", "KH", 1).await;
    assert_eq!(
        step_one(&g.th_worker, &th, &first).await["state"],
        "delivered"
    );

    g.revoke(&[&g.pki.paths("TH").peer_cert]);
    // KH closes the connection TH made under the old list once idle; the
    // next request needs a new handshake.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = submit(&th, "TH", "KH", 2).await;
    let s = step_one(&g.th_worker, &th, &second).await;
    assert_ne!(s["state"], "delivered", "{s}");
    assert!(
        g.kh.node.store.inbound(&second).await.unwrap().is_none(),
        "nothing from a revoked peer is stored"
    );
    let metrics = g.metrics().await;
    assert!(
        metrics.contains("homeward_tls_handshake_failures_total{port=\"peer\",reason=\"revoked\"}"),
        "{metrics}"
    );
    // KH's own deliveries judge TH's server certificate by the same list.
    let to_th = submit(&kh, "KH", "TH", 3).await;
    let s = step_one(&g.kh_worker, &kh, &to_th).await;
    assert_ne!(s["state"], "delivered", "{s}");
    assert!(g.th.node.store.inbound(&to_th).await.unwrap().is_none());

    // Lifted again: what waited is delivered, once.
    g.revoke(&[]);
    eventually(
        "the waiting messages delivered",
        Duration::from_secs(10),
        || async {
            step(&g.th_worker).await;
            step(&g.kh_worker).await;
            state(&th, &second).await["state"] == "delivered"
                && state(&kh, &to_th).await["state"] == "delivered"
        },
    )
    .await;
    assert_eq!(
        read_inbox(&kh).await.len(),
        2,
        "first and second, each once"
    );
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_signing_certificate_is_refused_with_signer_revoked_and_nothing_stored() {
    let g = Revocable::start().await;
    let th = g.th_api();
    g.revoke(&[&g.pki.paths("TH").sign_cert]);
    let id = submit(&th, "TH", "KH", 1).await;
    let s = step_one(&g.th_worker, &th, &id).await;
    assert_eq!(s["state"], "rejected", "{s}");
    assert!(s.to_string().contains("signer_revoked"), "{s}");
    assert!(g.kh.node.store.inbound(&id).await.unwrap().is_none());
    let metrics = g.metrics().await;
    assert!(
        metrics.contains(
            "homeward_signature_failures_total{what=\"envelope\",code=\"signer_revoked\"} 1"
        ),
        "{metrics}"
    );
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_does_not_load_keeps_the_material_in_force_and_is_counted() {
    let g = Revocable::start().await;
    let th = g.th_api();
    let before = g.kh.node.credentials();
    // Not a CRL; then a certificate whose key is another's.
    std::fs::write(
        &g.crl,
        "-----BEGIN X509 CRL-----\nbm90IGEgQ1JM\n-----END X509 CRL-----\n",
    )
    .unwrap();
    let refused = reload(&g.kh.node, "test").expect_err("a bad CRL is refused");
    assert!(
        refused.to_string().contains(&g.crl.display().to_string()),
        "the refusal names the file: {refused}"
    );
    std::fs::write(&g.crl, g.pki.crl("TH", &[])).unwrap();
    let kh = g.pki.paths("KH");
    let own_key = std::fs::read(&kh.peer_key).unwrap();
    std::fs::copy(g.pki.paths("VN").peer_key, &kh.peer_key).unwrap();
    let refused = reload(&g.kh.node, "test").expect_err("a mismatched key is refused");
    assert!(!refused.to_string().is_empty());
    std::fs::write(&kh.peer_key, own_key).unwrap();
    assert!(
        Arc::ptr_eq(&before, &g.kh.node.credentials()),
        "the set in force is the one loaded at start"
    );
    let metrics = g.metrics().await;
    assert!(
        metrics.contains("homeward_reloads_total{result=\"refused\"} 2"),
        "{metrics}"
    );
    // And KH still receives.
    let id = submit(&th, "TH", "KH", 1).await;
    assert_eq!(step_one(&g.th_worker, &th, &id).await["state"], "delivered");
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_puts_a_changed_crl_in_force_without_being_asked() {
    let pki = Pki::new();
    let data = tempfile::tempdir().expect("tempdir");
    let crl = data.path().join("th.crl.pem");
    std::fs::write(&crl, pki.crl("TH", &[])).unwrap();
    let (kh_l, th_l) = (bind(), bind());
    let mut kh_settings = settings_for(&pki, "KH", data.path(), &kh_l, &[("TH", th_l.peer_addr())]);
    kh_settings.peers[0].crl = Some(crl.clone());
    kh_settings.tls.watch_interval_ms = 100;
    let kh = start(kh_settings, kh_l).await;
    let before = kh.node.credentials();
    std::fs::write(&crl, pki.crl("TH", &[&pki.paths("TH").peer_cert])).unwrap();
    eventually("the new CRL in force", Duration::from_secs(10), || async {
        !Arc::ptr_eq(&before, &kh.node.credentials())
    })
    .await;
    assert_eq!(kh.node.credentials().crls_of("TH").len(), 1);
    drop(th_l);
    kh.stop().await;
}

/// The certificate KH's peer port presents to a new TLS client.
async fn presented(pki: &Pki, peer: std::net::SocketAddr) -> Vec<u8> {
    let ca = tls::load_certs(&pki.paths("KH").ca_cert).unwrap();
    let identity = pki.identity(&pki.paths("TH"));
    let config = tls::peer_client_config(Some(&identity), &ca, &[], "KH").unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(peer).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = connector.connect(name, tcp).await.expect("handshake");
    conn.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_tls_certificate_is_presented_by_new_handshakes_and_nothing_is_lost() {
    let pair = Pair::start().await;
    let th = pair.th_api();
    let kh = pair.kh_api();
    let old = presented(&pair.pki, pair.kh.peer_addr).await;
    let mut ids = Vec::new();
    for n in 1..=40 {
        ids.push(submit(&th, "TH", "KH", n).await);
        if n == 20 {
            let new = pair.pki.reissue_peer("KH");
            reload(&pair.kh.node, "test").expect("the new certificate loads");
            assert_ne!(old, new);
            assert_eq!(presented(&pair.pki, pair.kh.peer_addr).await, new);
        }
    }
    // KH's own deliveries present the new certificate to TH too.
    let back = submit(&kh, "KH", "TH", 99).await;
    for id in &ids {
        let s = th.wait_final(id, Duration::from_secs(20)).await;
        assert_eq!(
            s.as_ref().map(|s| s["state"].clone()),
            Some("delivered".into()),
            "{id}"
        );
    }
    let s = kh.wait_final(&back, Duration::from_secs(20)).await.unwrap();
    assert_eq!(s["state"], "delivered", "{s}");
    let inbox = read_inbox(&kh).await;
    assert_eq!(inbox.len(), ids.len(), "every message once");
    let metrics = kh
        .with_token(OPERATOR_TOKEN)
        .metrics_text()
        .await
        .unwrap()
        .text;
    let (_, new) =
        x509_parser::parse_x509_certificate(&presented(&pair.pki, pair.kh.peer_addr).await)
            .map(|(r, c)| (r.len(), c.validity().not_after.timestamp()))
            .unwrap();
    assert!(
        metrics.contains(&format!(
            "homeward_certificate_expiry_timestamp_seconds{{which=\"tls\"}} {new}"
        )),
        "{metrics}"
    );
    pair.stop().await;
}
