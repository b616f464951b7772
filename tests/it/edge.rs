//! The HTTP edge of both ports as a client meets it: oversized bodies get
//! their 413 (with and without `Content-Length`, HTTP/1.1 and HTTP/2),
//! slow clients are cut off while others get through, every route answers
//! a wrong method and HEAD with the standard error body, the TLS versions
//! each port offers, and the headers that keep case data out of caches and
//! frames.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use homeward::config::Settings;
use homeward::gateway::RunningGateway;
use homeward::http::local::rules;
use homeward::protocol::{BATCH_PATH, MESSAGES_PATH};
use homeward::tls;
use reqwest::Method;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// KH alone (TH configured, never running), with `tweak` applied to its
/// settings.
struct Node {
    pki: Pki,
    _data: tempfile::TempDir,
    _th: Unreachable,
    kh: RunningGateway,
}

impl Node {
    async fn start(tweak: impl FnOnce(&mut Settings)) -> Self {
        let pki = Pki::new();
        let data = tempfile::tempdir().expect("tempdir");
        let th = Unreachable::new();
        let listeners = bind();
        let mut s = settings_for(&pki, "KH", data.path(), &listeners, &[("TH", th.addr)]);
        tweak(&mut s);
        let kh = start(s, listeners).await;
        Self {
            pki,
            _data: data,
            _th: th,
            kh,
        }
    }

    fn api(&self) -> Api {
        api(&self.pki, "KH", self.kh.api_addr)
    }

    fn roots(&self) -> rustls::RootCertStore {
        let ca = tls::load_certs(&self.pki.paths("KH").ca_cert).expect("CA");
        tls::roots_from(&ca).expect("roots")
    }

    /// A client of one port speaking only HTTP/1.1 or only HTTP/2.
    fn client(&self, port: Port, http2: bool) -> reqwest::Client {
        let versions: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
        let builder = rustls::ClientConfig::builder_with_provider(tls::provider())
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(self.roots());
        let mut config = match port {
            Port::Local => builder.with_no_client_auth(),
            Port::Peer => {
                let th = self.pki.identity(&self.pki.paths("TH"));
                builder
                    .with_client_auth_cert(th.chain.clone(), th.key.clone_key())
                    .expect("client certificate")
            }
        };
        config.alpn_protocols = vec![if http2 {
            b"h2".to_vec()
        } else {
            b"http/1.1".to_vec()
        }];
        let builder = reqwest::Client::builder()
            .use_preconfigured_tls(config)
            .timeout(Duration::from_secs(60));
        let builder = if http2 {
            builder.http2_prior_knowledge()
        } else {
            builder.http1_only()
        };
        builder.build().expect("client")
    }

    fn url(&self, port: Port, path: &str) -> String {
        let addr = match port {
            Port::Local => self.kh.api_addr,
            Port::Peer => self.kh.peer_addr,
        };
        format!("https://127.0.0.1:{}{path}", addr.port())
    }

    /// A raw TLS connection to the local API port (HTTP/1.1 by hand).
    async fn raw(&self) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        self.raw_alpn(b"http/1.1").await
    }

    /// A raw TLS connection to the local API port offering `alpn`.
    async fn raw_alpn(
        &self,
        alpn: &[u8],
    ) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let mut config = rustls::ClientConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(self.roots())
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(self.kh.api_addr)
            .await
            .expect("connect");
        connector
            .connect(ServerName::try_from("127.0.0.1").expect("name"), tcp)
            .await
            .expect("TLS handshake")
    }
}

#[derive(Debug, Clone, Copy)]
enum Port {
    Local,
    Peer,
}

static CHUNK: [u8; 1 << 20] = [b' '; 1 << 20];

/// `size` bytes of spaces as a stream of 1 MiB chunks (no copy of the whole).
fn spaces(size: usize) -> reqwest::Body {
    let chunks = (0..size.div_ceil(CHUNK.len())).map(move |i| {
        let n = (size - i * CHUNK.len()).min(CHUNK.len());
        Ok::<&'static [u8], std::io::Error>(&CHUNK[..n])
    });
    reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413_on_both_ports_and_both_http_versions() {
    let node = Node::start(|_| {}).await;
    for (port, path) in [
        (Port::Local, "/v1/messages"),
        (Port::Local, "/v1/validate"),
        (Port::Peer, MESSAGES_PATH),
    ] {
        for http2 in [false, true] {
            let client = node.client(port, http2);
            for size in [1_500_000usize, 20_000_000, 200_000_000] {
                for announced in [true, false] {
                    let mut request = client
                        .post(node.url(port, path))
                        .bearer_auth(TOKEN)
                        .header(CONTENT_TYPE, "application/json");
                    if announced {
                        request = request.header(CONTENT_LENGTH, size);
                    }
                    let what = format!(
                        "{port:?} {path}, {} bytes, HTTP/{}, {}",
                        size,
                        if http2 { "2" } else { "1.1" },
                        if announced {
                            "Content-Length"
                        } else {
                            "no length"
                        }
                    );
                    let resp = request
                        .body(spaces(size))
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("{what}: no answer: {e:?}"));
                    assert_eq!(resp.status(), 413, "{what}");
                    let body: Value = resp.json().await.expect("JSON error body");
                    assert_eq!(body["error"]["code"], "body_too_large", "{what}: {body}");
                }
            }
        }
    }
    // Nothing of it was stored, and the node still serves.
    let api = node.api();
    assert_eq!(api.health().await.unwrap().status, 200);
    assert_eq!(read_inbox(&api).await.len(), 0);
    node.kh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_others_get_through() {
    let node = Node::start(|s| {
        s.local_api.read_timeout_ms = 500;
        s.peer_api.read_timeout_ms = 500;
    })
    .await;
    // 200 connections that never finish their headers.
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut conn = node.raw().await;
        conn.write_all(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .await
            .expect("partial headers");
        conn.flush().await.expect("flush");
        slow.push(conn);
    }
    // A client that behaves is served meanwhile.
    let api = node.api();
    let r = tokio::time::timeout(Duration::from_secs(5), api.health())
        .await
        .expect("served while 200 slow connections are open")
        .unwrap();
    assert_eq!(r.status, 200);
    // Each slow connection is closed by the gateway after its read timeout.
    for (i, conn) in slow.iter_mut().enumerate() {
        let mut buf = [0u8; 512];
        let read = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("slow connection {i} still open"));
        // Closed (an error or the end), or an answer saying so; never a
        // served request.
        if let Ok(n) = read {
            assert!(
                !String::from_utf8_lossy(&buf[..n]).contains("200 OK"),
                "slow connection {i} was served"
            );
        }
    }
    // A body trickled too slowly gets 408 with the standard error body.
    let mut conn = node.raw().await;
    let head = format!(
        "POST /v1/validate HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"case_ref\""
    );
    conn.write_all(head.as_bytes()).await.expect("request");
    conn.flush().await.expect("flush");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"request_timeout\""), "{answer}");
    node.kh.stop().await;
}

/// The types of the HTTP/2 frames in `bytes`, in order.
fn h2_frame_types(bytes: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    let mut at = 0;
    while at + 9 <= bytes.len() {
        let len = usize::from(bytes[at]) << 16
            | usize::from(bytes[at + 1]) << 8
            | usize::from(bytes[at + 2]);
        types.push(bytes[at + 3]);
        at += 9 + len;
    }
    types
}

#[tokio::test]
async fn idle_connections_are_closed_on_both_http_versions() {
    let node = Node::start(|s| {
        s.local_api.idle_timeout_ms = 300;
        s.peer_api.idle_timeout_ms = 300;
        // Also how long a closing connection may take to go.
        s.local_api.read_timeout_ms = 500;
    })
    .await;
    // HTTP/2: the client preface and empty SETTINGS, then no stream ever.
    let mut h2 = node.raw_alpn(b"h2").await;
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .expect("preface");
    h2.flush().await.expect("flush");
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), h2.read_to_end(&mut got))
        .await
        .expect("an idle HTTP/2 connection is closed");
    let frames = h2_frame_types(&got);
    assert!(
        frames.contains(&0x7),
        "no GOAWAY before closing: frames {frames:?}"
    );
    // HTTP/1.1: a request is served on a kept-alive connection, which is
    // closed once idle.
    let mut h1 = node.raw().await;
    h1.write_all(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("request");
    h1.flush().await.expect("flush");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), h1.read_to_end(&mut answer))
        .await
        .expect("an idle HTTP/1.1 connection is closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // A pooled client whose connection was closed reconnects.
    let api = node.api();
    assert_eq!(api.health().await.unwrap().status, 200);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(api.health().await.unwrap().status, 200);
    node.kh.stop().await;
}

/// A route's path with its parameters filled in.
fn concrete(path: &str) -> String {
    path.replace("{id}", "0195b7d2-4c1a-7e33-a8f6-0bda7e000003")
        .replace("{case_ref}", "TH-KH-2026-000001")
        .replace("{message_type}", "referral.notify")
        .replace("{version}", "1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_a_wrong_method_and_head_with_the_standard_error_body() {
    let node = Node::start(|_| {}).await;
    let api = node.api();
    let operator = api.with_token(OPERATOR_TOKEN);
    for rule in rules() {
        let path = concrete(&rule.path);
        for method in [Method::DELETE, Method::PUT, Method::PATCH] {
            let r = Api::send(operator.request(method.clone(), &path))
                .await
                .unwrap();
            assert_eq!(r.status, 405, "{method} {path}: {}", r.body);
            assert_eq!(
                r.body["error"]["code"], "method_not_allowed",
                "{method} {path}"
            );
        }
        // HEAD is GET without a body: on a GET route it gets what GET gets
        // (401 without a token unless public); elsewhere 405. The headers
        // say it is the JSON error body either way.
        let resp = node
            .client(Port::Local, false)
            .head(node.url(Port::Local, &path))
            .send()
            .await
            .expect("HEAD answered");
        let expected = match (rule.method == Method::GET, rule.roles.is_empty()) {
            (true, true) => 200,
            (true, false) => 401,
            (false, _) => 405,
        };
        assert_eq!(resp.status(), expected, "HEAD {path}");
        if expected != 200 {
            assert_eq!(
                resp.headers()[CONTENT_TYPE],
                "application/json",
                "HEAD {path}"
            );
        }
    }
    let th = node.pki.identity(&node.pki.paths("TH"));
    let peer = peer_client(&node.pki, "KH", Some(&th));
    for path in [MESSAGES_PATH, BATCH_PATH] {
        for method in [Method::GET, Method::DELETE, Method::PUT] {
            let resp = peer
                .request(method.clone(), node.url(Port::Peer, path))
                .send()
                .await
                .expect("peer answers");
            assert_eq!(resp.status(), 405, "{method} {path}");
            let body: Value = resp.json().await.expect("JSON error body");
            assert_eq!(
                body["error"]["code"], "method_not_allowed",
                "{method} {path}"
            );
        }
        let resp = peer
            .head(node.url(Port::Peer, path))
            .send()
            .await
            .expect("peer answers");
        assert_eq!(resp.status(), 405, "HEAD {path}");
        assert_eq!(resp.headers()[CONTENT_TYPE], "application/json");
    }
    let resp = peer
        .get(node.url(Port::Peer, "/peer/v1/nothing"))
        .send()
        .await
        .expect("peer answers");
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.expect("JSON error body");
    assert_eq!(body["error"]["code"], "no_such_route");
    node.kh.stop().await;
}

/// Whether a TLS 1.2-only client completes a handshake with `addr`.
async fn tls12_handshake(node: &Node, addr: SocketAddr, with_cert: bool) -> bool {
    let builder = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("versions")
        .with_root_certificates(node.roots());
    let config = if with_cert {
        let th = node.pki.identity(&node.pki.paths("TH"));
        builder
            .with_client_auth_cert(th.chain.clone(), th.key.clone_key())
            .expect("client certificate")
    } else {
        builder.with_no_client_auth()
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    connector
        .connect(ServerName::try_from("127.0.0.1").expect("name"), tcp)
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ports_speak_tls_1_3_and_the_local_port_1_2_only_when_configured() {
    let node = Node::start(|_| {}).await;
    assert!(
        !tls12_handshake(&node, node.kh.api_addr, false).await,
        "the local API refuses TLS 1.2 by default"
    );
    assert!(
        !tls12_handshake(&node, node.kh.peer_addr, true).await,
        "the peer port refuses TLS 1.2"
    );
    let metrics = node
        .api()
        .with_token(OPERATOR_TOKEN)
        .metrics_text()
        .await
        .unwrap()
        .text;
    assert!(
        metrics.contains(
            "homeward_tls_handshake_failures_total{port=\"api\",reason=\"incompatible\"} 1"
        ),
        "{metrics}"
    );
    let r = node.api().health().await.unwrap();
    assert_eq!(r.status, 200, "TLS 1.3 is served");
    node.kh.stop().await;

    let legacy = Node::start(|s| s.tls.api_tls12 = true).await;
    assert!(
        tls12_handshake(&legacy, legacy.kh.api_addr, false).await,
        "tls.api_tls12 offers TLS 1.2 on the local API"
    );
    assert!(
        !tls12_handshake(&legacy, legacy.kh.peer_addr, true).await,
        "the peer port stays TLS 1.3 only"
    );
    legacy.kh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_runs_under_a_strict_policy_and_case_data_is_never_cached() {
    let node = Node::start(|_| {}).await;
    let client = node.client(Port::Local, false);
    for (path, kind) in [
        ("/", "text/html"),
        ("/dashboard.js", "text/javascript"),
        ("/dashboard.css", "text/css"),
    ] {
        let resp = client
            .get(node.url(Port::Local, path))
            .send()
            .await
            .expect("served");
        assert_eq!(resp.status(), 200, "{path}");
        let h = resp.headers();
        assert!(
            h[CONTENT_TYPE].to_str().unwrap().starts_with(kind),
            "{path}"
        );
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
    }
    let page = client
        .get(node.url(Port::Local, "/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("<script src=\"/dashboard.js\"></script>"));
    assert!(
        !page.contains("<script>") && !page.contains("<style>"),
        "nothing inline"
    );
    // Every answer that may carry case data says not to keep it.
    let api = node.api();
    for path in [
        "/v1/inbox",
        "/v1/cases/TH-KH-2026-000001",
        "/v1/timers",
        "/v1/health",
    ] {
        let resp = api
            .request(Method::GET, path)
            .send()
            .await
            .expect("answered");
        assert_eq!(resp.headers()["cache-control"], "no-store", "{path}");
        assert_eq!(
            resp.headers()["x-content-type-options"],
            "nosniff",
            "{path}"
        );
    }
    node.kh.stop().await;
}
