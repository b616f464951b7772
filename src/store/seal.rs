//! Encryption at rest of message bodies (they hold victims' personal data):
//! AES-256-GCM with a random nonce per row and the message id as associated
//! data, so a sealed body cannot be moved to another row. Each sealed value
//! names its key id, so keys rotate: new rows use the active key, old rows
//! stay readable while their key is still configured. Routing metadata
//! (ids, case reference, type, peer, times) stays in clear for queries.

use std::collections::BTreeMap;
use std::path::PathBuf;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngCore;
use serde::{Deserialize, Serialize};

const PREFIX: &str = "hw1";

/// `[encryption]` in the node configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionSettings {
    /// Id of the key new rows are sealed with.
    pub active_key: String,
    pub keys: Vec<KeySettings>,
    /// Id of the key the case search's keyed hashes derive from (default:
    /// `active_key`). Pin it before rotating the active key: entries made
    /// under another search key are not found.
    #[serde(default)]
    pub search_key: Option<String>,
}

/// One key: 32 bytes as 64 hex digits, read from a file or an environment
/// variable (never written in the configuration itself).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeySettings {
    pub id: String,
    #[serde(default)]
    pub file: Option<PathBuf>,
    #[serde(default)]
    pub env: Option<String>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("encryption key `{id}`: {message}")]
    Key { id: String, message: String },
    #[error("`encryption.active_key` names `{0}`, which is not among `encryption.keys`")]
    NoActiveKey(String),
    #[error("`encryption.search_key` names `{0}`, which is not among `encryption.keys`")]
    NoSearchKey(String),
    #[error("a stored body is sealed with key `{0}`, which is not configured")]
    UnknownKey(String),
    #[error("a stored body does not decrypt (wrong key or tampered row)")]
    Corrupt,
}

pub struct Sealer {
    active: String,
    keys: BTreeMap<String, Aes256Gcm>,
    /// Keyed hashes of search terms (`search_digest`).
    search: ring::hmac::Key,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("active", &self.active)
            .field("key_ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn parse_key(id: &str, text: &str) -> Result<(Aes256Gcm, Vec<u8>), SealError> {
    let bytes = hex::decode(text.trim()).map_err(|_| SealError::Key {
        id: id.to_string(),
        message: "must be 64 hex digits (see `homeward keygen`)".into(),
    })?;
    let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| SealError::Key {
        id: id.to_string(),
        message: format!("must be 32 bytes, got {}", bytes.len()),
    })?;
    Ok((cipher, bytes))
}

/// The search key derived from a sealing key's bytes: never the AES key
/// itself, so neither use can weaken the other.
fn search_key_of(bytes: &[u8]) -> ring::hmac::Key {
    let derive = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, bytes);
    let tag = ring::hmac::sign(&derive, b"homeward case search v1");
    ring::hmac::Key::new(ring::hmac::HMAC_SHA256, tag.as_ref())
}

/// A new random key as hex, for `homeward keygen` and tests.
pub fn new_key_hex() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    hex::encode(key)
}

impl Sealer {
    pub fn from_settings(s: &EncryptionSettings) -> Result<Self, SealError> {
        let mut keys = BTreeMap::new();
        let mut raw = BTreeMap::new();
        for k in &s.keys {
            let text = match (&k.file, &k.env) {
                (Some(path), None) => {
                    std::fs::read_to_string(path).map_err(|e| SealError::Key {
                        id: k.id.clone(),
                        message: format!("cannot read `{}`: {e}", path.display()),
                    })?
                }
                (None, Some(var)) => std::env::var(var).map_err(|_| SealError::Key {
                    id: k.id.clone(),
                    message: format!("environment variable `{var}` is not set"),
                })?,
                _ => {
                    return Err(SealError::Key {
                        id: k.id.clone(),
                        message: "give exactly one of `file` or `env`".into(),
                    });
                }
            };
            if k.id.is_empty() || k.id.contains(':') {
                return Err(SealError::Key {
                    id: k.id.clone(),
                    message: "id must be non-empty and contain no `:`".into(),
                });
            }
            let (cipher, bytes) = parse_key(&k.id, &text)?;
            keys.insert(k.id.clone(), cipher);
            raw.insert(k.id.clone(), bytes);
        }
        if !keys.contains_key(&s.active_key) {
            return Err(SealError::NoActiveKey(s.active_key.clone()));
        }
        let search_id = s.search_key.as_ref().unwrap_or(&s.active_key);
        let search = raw
            .get(search_id)
            .map(|b| search_key_of(b))
            .ok_or_else(|| SealError::NoSearchKey(search_id.clone()))?;
        Ok(Self {
            active: s.active_key.clone(),
            keys,
            search,
        })
    }

    /// A sealer with one fresh random key (benchmarks).
    pub fn ephemeral() -> Self {
        let id = "ephemeral".to_string();
        let (key, bytes) = parse_key(&id, &new_key_hex()).expect("a fresh key is valid");
        Self {
            active: id.clone(),
            keys: BTreeMap::from([(id, key)]),
            search: search_key_of(&bytes),
        }
    }

    /// The keyed hash (HMAC-SHA256, hex) of a search term: what the store
    /// keeps and looks up, so the database never holds a searchable
    /// document number, and a copy of it without the key finds nothing.
    pub fn search_digest(&self, term: &str) -> String {
        hex::encode(ring::hmac::sign(&self.search, term.as_bytes()).as_ref())
    }

    /// Seals `plaintext`, bound to `aad` (the message id).
    pub fn seal(&self, aad: &str, plaintext: &str) -> String {
        let cipher = &self.keys[&self.active];
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer does not fail");
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        format!("{PREFIX}:{}:{}", self.active, B64.encode(blob))
    }

    /// Opens a sealed value; a value that was never sealed (written before
    /// encryption was enabled) is returned as it is.
    pub fn open(&self, aad: &str, stored: &str) -> Result<String, SealError> {
        let Some(rest) = stored
            .strip_prefix(PREFIX)
            .and_then(|r| r.strip_prefix(':'))
        else {
            return Ok(stored.to_string());
        };
        let (kid, b64) = rest.split_once(':').ok_or(SealError::Corrupt)?;
        let cipher = self
            .keys
            .get(kid)
            .ok_or_else(|| SealError::UnknownKey(kid.to_string()))?;
        let blob = B64.decode(b64).map_err(|_| SealError::Corrupt)?;
        if blob.len() < 12 {
            return Err(SealError::Corrupt);
        }
        let (nonce, sealed) = blob.split_at(12);
        let plain = cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| SealError::Corrupt)?;
        String::from_utf8(plain).map_err(|_| SealError::Corrupt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &std::path::Path, ids: &[&str], active: &str) -> EncryptionSettings {
        EncryptionSettings {
            active_key: active.into(),
            keys: ids
                .iter()
                .map(|id| {
                    let path = dir.join(format!("{id}.key"));
                    if !path.exists() {
                        std::fs::write(&path, new_key_hex()).unwrap();
                    }
                    KeySettings {
                        id: id.to_string(),
                        file: Some(path),
                        env: None,
                    }
                })
                .collect(),
            search_key: None,
        }
    }

    #[test]
    fn seals_opens_and_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let old = Sealer::from_settings(&settings(dir.path(), &["k1"], "k1")).unwrap();
        let sealed = old.seal("id-1", "Sokha Example");
        assert!(!sealed.contains("Sokha"));
        assert!(sealed.starts_with("hw1:k1:"));
        let rotated = Sealer::from_settings(&settings(dir.path(), &["k1", "k2"], "k2")).unwrap();
        assert_eq!(rotated.open("id-1", &sealed).unwrap(), "Sokha Example");
        assert!(rotated.seal("id-2", "x").starts_with("hw1:k2:"));
        // Bound to its row.
        assert_eq!(rotated.open("id-2", &sealed), Err(SealError::Corrupt));
        let only_new = Sealer::from_settings(&settings(dir.path(), &["k2"], "k2")).unwrap();
        assert_eq!(
            only_new.open("id-1", &sealed),
            Err(SealError::UnknownKey("k1".into()))
        );
    }

    #[test]
    fn bad_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("short.key"), "abcd").unwrap();
        let s = EncryptionSettings {
            active_key: "short".into(),
            keys: vec![KeySettings {
                id: "short".into(),
                file: Some(dir.path().join("short.key")),
                env: None,
            }],
            search_key: None,
        };
        let err = Sealer::from_settings(&s).unwrap_err().to_string();
        assert!(err.contains("short") && err.contains("32 bytes"), "{err}");
        let s = EncryptionSettings {
            active_key: "missing".into(),
            keys: vec![],
            search_key: None,
        };
        assert!(matches!(
            Sealer::from_settings(&s),
            Err(SealError::NoActiveKey(_))
        ));
    }
}
