//! A throwaway PKI for the tests: a CA and certificates for each of the four
//! countries, plus a rogue CA that also claims to be Thailand's.

use std::path::Path;

use homeward::tls::Identity;
use homeward::tls::pki::{self, CountryPaths};
use tempfile::TempDir;

pub const COUNTRIES: &[&str] = &["KH", "TH", "VN", "MY"];

/// A fresh PKI for the four countries, plus a rogue CA that also claims
/// to be Thailand's (in `rogue/th`), in a temporary directory.
pub struct Pki {
    pub dir: TempDir,
}

impl Pki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        pki::write_dev_pki(dir.path(), COUNTRIES, 30).expect("test PKI");
        let rogue = pki::generate_country("TH", "rogue", 30).expect("rogue PKI");
        pki::write_country(&dir.path().join("rogue"), &rogue).expect("rogue PKI written");
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn paths(&self, cc: &str) -> CountryPaths {
        CountryPaths::new(self.path(), cc)
    }

    pub fn rogue_th(&self) -> CountryPaths {
        CountryPaths::new(&self.path().join("rogue"), "TH")
    }

    pub fn identity(&self, paths: &CountryPaths) -> Identity {
        Identity::load(&paths.peer_cert, &paths.peer_key).expect("identity")
    }
}
