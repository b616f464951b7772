//! The published examples are the contract integrators build against: every
//! `valid-*.json` must pass, every `invalid-*.json` must fail with at least
//! the violations its `.expect.json` sidecar names. A type's version 1
//! examples sit in `schemas/examples/<type>/`, a later version's in
//! `schemas/examples/<type>/v<N>/`, and each example's `schema_version` is
//! its folder's. Also the `validate` CLI.

use std::path::{Path, PathBuf};
use std::process::Command;

use homeward::domain::message::SchemaRegistry;
use serde_json::Value;

/// The folder of the examples of `message_type` in `version`.
fn examples_dir(message_type: &str, version: u32) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas/examples")
        .join(message_type);
    if version == 1 {
        dir
    } else {
        dir.join(format!("v{version}"))
    }
}

/// Every example, with the schema version its folder stands for.
fn examples_with_versions() -> Vec<(PathBuf, u32)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/examples");
    let mut files = Vec::new();
    let mut folders = Vec::new();
    for dir in std::fs::read_dir(&root).expect("schemas/examples exists") {
        let dir = dir.unwrap().path();
        if dir.is_dir() {
            folders.push((dir, 1));
        }
    }
    while let Some((dir, version)) = folders.pop() {
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            if f.is_dir() {
                let v = name
                    .strip_prefix('v')
                    .and_then(|v| v.parse::<u32>().ok())
                    .filter(|v| *v > 1 && version == 1)
                    .unwrap_or_else(|| {
                        panic!("{}: a version folder is named v<N>, N > 1", f.display())
                    });
                folders.push((f, v));
            } else if name.ends_with(".json") && !name.ends_with(".expect.json") {
                files.push((f, version));
            }
        }
    }
    files.sort();
    files
}

fn examples() -> Vec<PathBuf> {
    examples_with_versions()
        .into_iter()
        .map(|(f, _)| f)
        .collect()
}

#[test]
fn each_example_is_of_its_folders_schema_version() {
    let mut by_version = std::collections::BTreeMap::<u32, usize>::new();
    for (file, version) in examples_with_versions() {
        let doc = read(&file);
        // The envelope's own examples are of envelope version 1, whatever
        // payload they carry.
        if file.parent().unwrap().ends_with("envelope") {
            continue;
        }
        assert_eq!(
            doc["schema_version"],
            version,
            "{}: its folder is of version {version}",
            file.display()
        );
        *by_version.entry(version).or_default() += 1;
    }
    assert!(
        by_version.get(&2).is_some_and(|n| *n >= 15),
        "{by_version:?}"
    );
}

fn read(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_example_validates_as_its_name_says() {
    let registry = SchemaRegistry::embedded().expect("schemas compile");
    let files = examples();
    let mut valid = 0;
    let mut invalid = 0;
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let result = registry.validate(&read(file));
        // The hot paths' variant, which takes the document, judges the same.
        match (&result, registry.validate_owned(read(file))) {
            (Ok(by_ref), Ok(owned)) => assert_eq!(by_ref, &owned, "{}", file.display()),
            (Err(by_ref), Err(owned)) => {
                assert_eq!(by_ref.details(), owned.details(), "{}", file.display())
            }
            (by_ref, owned) => panic!(
                "{}: validate says {:?}, validate_owned {:?}",
                file.display(),
                by_ref.is_ok(),
                owned.is_ok()
            ),
        }
        if name.starts_with("valid-") {
            valid += 1;
            assert!(
                result.is_ok(),
                "{} should be valid: {:?}",
                file.display(),
                result.err().map(|e| e.details())
            );
        } else if name.starts_with("invalid-") {
            invalid += 1;
            let err = result.expect_err(&format!("{} should be invalid", file.display()));
            let sidecar = file.with_extension("expect.json");
            let expect = read(&sidecar);
            let found: Vec<(String, String)> = err
                .details()
                .into_iter()
                .map(|d| (d.pointer.unwrap_or_default(), d.keyword.unwrap_or_default()))
                .collect();
            for v in expect["violations"].as_array().expect("violations listed") {
                let want = (
                    v["pointer"].as_str().unwrap().to_string(),
                    v["keyword"].as_str().unwrap().to_string(),
                );
                assert!(
                    found.contains(&want),
                    "{}: expected {want:?} among {found:?}",
                    file.display()
                );
            }
        } else {
            panic!(
                "{}: example names start with valid- or invalid-",
                file.display()
            );
        }
    }
    assert!(
        valid >= 6 && invalid >= 8,
        "too few examples: {valid} valid, {invalid} invalid"
    );
}

#[test]
fn every_registered_type_has_examples() {
    let registry = SchemaRegistry::embedded().unwrap();
    for (t, v, schema) in registry.schemas() {
        let dir = examples_dir(t, v);
        let count = |prefix: &str| {
            std::fs::read_dir(&dir)
                .map(|d| {
                    d.filter(|f| {
                        let n = f
                            .as_ref()
                            .unwrap()
                            .file_name()
                            .to_string_lossy()
                            .into_owned();
                        n.starts_with(prefix) && !n.ends_with(".expect.json")
                    })
                    .count()
                })
                .unwrap_or(0)
        };
        assert!(count("valid-") >= 2, "{t} v{v}: needs 2 valid examples");
        assert!(count("invalid-") >= 3, "{t} v{v}: needs 3 invalid examples");
        assert!(
            schema.to_string().contains("x-personal"),
            "{t}: personal fields must be annotated"
        );
    }
}

fn validate_cli(args: &[&str], stdin: Option<&str>) -> (i32, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_homeward"))
        .arg("validate")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn validate_cli_exit_codes_and_reports() {
    let files = examples();
    let valid = files
        .iter()
        .find(|f| {
            f.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("valid-")
        })
        .unwrap();
    let invalid = files
        .iter()
        .find(|f| {
            f.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("invalid-")
        })
        .unwrap();
    let (code, out) = validate_cli(&[valid.to_str().unwrap()], None);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("valid"));

    let (code, out) = validate_cli(&[valid.to_str().unwrap(), invalid.to_str().unwrap()], None);
    assert_eq!(code, 1, "{out}");
    let expect = read(&invalid.with_extension("expect.json"));
    let pointer = expect["violations"][0]["pointer"].as_str().unwrap();
    assert!(out.contains("INVALID") && out.contains(pointer), "{out}");

    let (code, out) = validate_cli(&["--json", invalid.to_str().unwrap()], None);
    assert_eq!(code, 1);
    let report: Value = serde_json::from_str(&out).expect("JSON report");
    assert_eq!(report[0]["valid"], false);
    assert!(
        report[0]["violations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["pointer"] == pointer)
    );

    let (code, _) = validate_cli(&["/nonexistent/message.json"], None);
    assert_eq!(code, 2);

    let text = std::fs::read_to_string(valid).unwrap();
    let (code, out) = validate_cli(&["-"], Some(&text));
    assert_eq!(code, 0, "{out}");
    let (code, _) = validate_cli(&["-"], Some("{ not json"));
    assert_eq!(code, 1);
}
