//! Configuration: bad files and bad keys fail at start with a message that
//! names the key and the file; environment variables override any key.

use std::process::Command;

use crate::support::*;

fn serve(config: &std::path::Path, env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_homeward"));
    cmd.arg("serve").arg("--config").arg(config);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("homeward runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A KH configuration that each test breaks, so that `serve` refuses it
/// before it serves; should it start all the same, it listens on ports the
/// kernel picks (port 0), and its peer TH is nowhere (port 0 too).
fn write_config(dir: &std::path::Path, pki: &Pki) -> std::path::PathBuf {
    let any: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    let s = settings(pki, "KH", dir, (any, any), &[("TH", any)]);
    let path = dir.join("kh.toml");
    std::fs::write(&path, toml::to_string(&s).unwrap()).unwrap();
    path
}

#[test]
fn shipped_node_configs_load() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::set_current_dir(root).unwrap();
    for cc in ["kh", "th", "vn", "my"] {
        let s = homeward::config::Settings::load(&root.join(format!("config/nodes/{cc}.toml")))
            .unwrap_or_else(|e| panic!("config/nodes/{cc}.toml: {e}"));
        assert_eq!(s.node.country, cc.to_ascii_uppercase());
        assert!(!s.tokens.is_empty());
    }
    let s = homeward::config::Settings::load(&root.join("config/nodes/kh-postgres.toml"))
        .expect("config/nodes/kh-postgres.toml");
    assert_eq!(
        homeward::store::Backend::of_url(&s.database.url),
        Some(homeward::store::Backend::Postgres)
    );
}

#[test]
fn an_unknown_database_or_a_lease_shorter_than_an_attempt_is_refused() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &pki);
    let (code, err) = serve(
        &path,
        &[("HOMEWARD_DATABASE__URL", "mysql://root@127.0.0.1/homeward")],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("database.url"), "{err}");
    assert!(err.contains("postgres://"), "{err}");
    let (code, err) = serve(&path, &[("HOMEWARD_DELIVERY__LEASE_MS", "1000")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("delivery.lease_ms"), "{err}");
}

#[test]
fn a_wrong_type_names_the_key_and_the_file() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &pki);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("concurrency = 16", "concurrency = \"many\""),
    )
    .unwrap();
    let (code, err) = serve(&path, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("concurrency") && err.contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn an_unknown_key_is_refused() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &pki);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("[node]", "[node]\ncolour = \"blue\"")).unwrap();
    let (code, err) = serve(&path, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("colour"), "{err}");
}

#[test]
fn environment_overrides_a_key_and_is_checked_too() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &pki);
    let (code, err) = serve(&path, &[("HOMEWARD_NODE__COUNTRY", "XX")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("node.country") && err.contains("XX"), "{err}");
    let (code, err) = serve(&path, &[("HOMEWARD_TLS__CERT", "/nonexistent/cert.pem")]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("tls.cert") && err.contains("/nonexistent/cert.pem"),
        "{err}"
    );
}

#[test]
fn a_missing_file_is_named() {
    let (code, err) = serve(std::path::Path::new("/nonexistent/homeward.toml"), &[]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/homeward.toml"), "{err}");
}

#[test]
fn a_certificate_for_another_node_is_refused_at_start() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &pki);
    let th = pki.paths("TH");
    let (code, err) = serve(
        &path,
        &[
            ("HOMEWARD_TLS__CERT", th.peer_cert.to_str().unwrap()),
            ("HOMEWARD_TLS__KEY", th.peer_key.to_str().unwrap()),
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("urn:homeward:node:KH"), "{err}");
}

#[test]
fn timeouts_too_short_to_serve_anyone_are_refused() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &pki);
    for key in ["LOCAL_API__IDLE_TIMEOUT_MS", "PEER_API__READ_TIMEOUT_MS"] {
        let (code, err) = serve(&config, &[(&format!("HOMEWARD_{key}"), "5")]);
        assert_eq!(code, 2, "{key}: {err}");
        let named = key.to_ascii_lowercase().replace("__", ".");
        assert!(err.contains(&named), "{key}: {err}");
        assert!(err.contains("kh.toml"), "{key}: {err}");
    }
}

#[test]
fn a_batch_limit_below_the_message_limit_too_large_or_on_the_peer_port_is_refused() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &pki);
    for (key, value, says) in [
        (
            "LOCAL_API__MAX_BATCH_BYTES",
            "1000",
            "at least local_api.max_body_bytes",
        ),
        (
            "LOCAL_API__MAX_BATCH_BYTES",
            "1000000000",
            "at most 268435456",
        ),
        ("PEER_API__MAX_BATCH_BYTES", "8388608", "local API setting"),
    ] {
        let (code, err) = serve(&config, &[(&format!("HOMEWARD_{key}"), value)]);
        assert_eq!(code, 2, "{key}: {err}");
        let named = key.to_ascii_lowercase().replace("__", ".");
        assert!(err.contains(&named) && err.contains(says), "{key}: {err}");
    }
}
