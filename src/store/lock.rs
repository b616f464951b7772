//! One process per SQLite file: a gateway holds an exclusive lock on
//! `<database>.lock` for as long as it runs. SQLite itself would let a
//! second gateway open the file, and two delivery workers would then send
//! each other's messages and release each other's claims at start. The lock
//! is the operating system's (`flock`): it goes with the process, however
//! the process ends, so a crash leaves nothing to clean up. The file holds
//! the holder's pid, for the refusal's message.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::sql::{create_parent_dir, sqlite_path};
use super::{Backend, StoreError};

/// Held for the gateway's life; dropping it releases the lock.
#[derive(Debug)]
pub struct DatabaseLock {
    _file: File,
    path: PathBuf,
}

impl DatabaseLock {
    /// Locks the SQLite file `url` names. `None` where there is nothing to
    /// lock: PostgreSQL (several instances may share it) and in-memory
    /// SQLite (private to its connection).
    pub fn acquire(url: &str) -> Result<Option<Self>, StoreError> {
        if Backend::of_url(url) != Some(Backend::Sqlite) || in_memory(url) {
            return Ok(None);
        }
        let database = PathBuf::from(sqlite_path(url));
        let path = lock_path(&database);
        let io = |source| StoreError::LockFile {
            lock: path.clone(),
            source,
        };
        create_parent_dir(url);
        // Not truncated on open: until the lock is ours, the pid in the file
        // is the holder's.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                // The holder may not have written its pid yet.
                let _ = file.read_to_string(&mut text);
                let holder = text.trim().parse::<u32>().ok();
                return Err(StoreError::Locked {
                    database,
                    lock: path,
                    holder: holder.map_or_else(|| "unknown".to_string(), |p| p.to_string()),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(Some(Self { _file: file, path }))
    }

    /// The pid of the gateway running on the SQLite file `url` names:
    /// `None` if none holds its lock (or nothing is locked for `url`).
    pub fn holder(url: &str) -> Result<Option<u32>, StoreError> {
        if Backend::of_url(url) != Some(Backend::Sqlite) || in_memory(url) {
            return Ok(None);
        }
        let path = lock_path(Path::new(&sqlite_path(url)));
        let io = |source| StoreError::LockFile {
            lock: path.clone(),
            source,
        };
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        match file.try_lock_shared() {
            // Free: whoever wrote the pid has gone.
            Ok(()) => Ok(None),
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                file.read_to_string(&mut text).map_err(io)?;
                Ok(text.trim().parse::<u32>().ok())
            }
            Err(TryLockError::Error(e)) => Err(io(e)),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `<database>.lock`, beside the database (and its `-wal` and `-shm`).
fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

fn in_memory(url: &str) -> bool {
    let path = sqlite_path(url);
    path.is_empty() || path == ":memory:" || url.contains("mode=memory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_file_is_refused_naming_the_file_and_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("kh.db");
        let url = format!("sqlite://{}", db.display());
        let first = DatabaseLock::acquire(&url)
            .unwrap()
            .expect("a file is locked");
        assert_eq!(first.path(), dir.path().join("kh.db.lock"));
        let refused = DatabaseLock::acquire(&url).unwrap_err();
        let text = refused.to_string();
        assert!(text.contains(&db.display().to_string()), "{text}");
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        assert_eq!(
            DatabaseLock::holder(&url).unwrap(),
            Some(std::process::id())
        );
        drop(first);
        assert_eq!(DatabaseLock::holder(&url).unwrap(), None);
        assert!(DatabaseLock::acquire(&url).unwrap().is_some());
    }

    #[test]
    fn postgres_and_in_memory_sqlite_take_no_lock() {
        for url in [
            "sqlite::memory:",
            "sqlite://file:x?mode=memory",
            "postgres://postgres@127.0.0.1/test",
        ] {
            assert!(DatabaseLock::acquire(url).unwrap().is_none(), "{url}");
        }
    }
}
