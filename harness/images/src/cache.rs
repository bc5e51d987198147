//! The on-disk cache shared by every run: kernels, module builds.
//!
//! Entries are made in a private temporary directory and published with one `rename`, under an
//! exclusive `flock` on the entry's lock file: two runs never build the same entry at once, and an
//! interrupted run leaves only a temporary directory that nobody trusts (and the next run sweeps).

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The cache root: `$MODHARNESS_CACHE`, else `$XDG_CACHE_HOME/modharness`, else
/// `~/.cache/modharness`.
pub fn default_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("MODHARNESS_CACHE").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir).join("modharness");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    PathBuf::from(home).join(".cache/modharness")
}

/// A file-name-safe form of any text (a release a local image states, a package version):
/// letters, digits and `._+-` kept, anything else `_`, never empty, `.` or `..`.
pub fn safe_component(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._+-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() || cleaned.chars().all(|c| c == '.') {
        "_".into()
    } else {
        cleaned
    }
}

/// An exclusive lock on a cache entry, released when dropped.
pub struct EntryLock {
    _file: File,
}

/// Take the exclusive lock for `entry` (a path inside the cache), waiting for another holder.
pub fn lock(entry: &Path) -> Result<EntryLock> {
    take_lock(entry, true).map(|held| held.expect("a blocking lock is taken"))
}

/// Take the lock for `entry` if nobody holds it; `None` when somebody does.
pub fn try_lock(entry: &Path) -> Result<Option<EntryLock>> {
    take_lock(entry, false)
}

fn take_lock(entry: &Path, wait: bool) -> Result<Option<EntryLock>> {
    // Appended, not `with_extension`: entry names hold dots (`debian-6.12.117+deb12-amd64`), and
    // every entry of one `6.12` would share one lock.
    let name = entry.file_name().unwrap_or_default().to_string_lossy();
    let lock_path = entry.with_file_name(format!("{name}.lock"));
    if let Some(parent) = lock_path.parent() {
        fs::create_dir_all(parent).map_err(Error::io(parent))?;
    }
    let file = File::create(&lock_path).map_err(Error::io(&lock_path))?;
    let operation = if wait {
        libc::LOCK_EX
    } else {
        libc::LOCK_EX | libc::LOCK_NB
    };
    // SAFETY: flock on a file descriptor we own; it is released when the file closes.
    if unsafe { libc::flock(file.as_raw_fd(), operation) } != 0 {
        let error = std::io::Error::last_os_error();
        if !wait && error.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Ok(None);
        }
        return Err(Error::io(&lock_path)(error));
    }
    Ok(Some(EntryLock { _file: file }))
}

/// Make the cache entry `entry` unless it exists: `make` fills a fresh temporary directory, which
/// then becomes `entry` atomically. Returns `entry`.
pub fn get_or_make(entry: &Path, make: impl FnOnce(&Path) -> Result<()>) -> Result<PathBuf> {
    if entry.is_dir() {
        return Ok(entry.to_path_buf());
    }
    let _lock = lock(entry)?;
    if entry.is_dir() {
        return Ok(entry.to_path_buf());
    }
    let name = entry
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("entry");
    sweep_leftovers(entry, name);
    let tmp = entry.with_file_name(format!(".tmp-{name}-{}", std::process::id()));
    fs::create_dir_all(&tmp).map_err(Error::io(&tmp))?;
    match make(&tmp) {
        Ok(()) => {
            fs::rename(&tmp, entry).map_err(Error::io(entry))?;
            Ok(entry.to_path_buf())
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

/// Remove temporary directories that interrupted makers of `entry` left behind. Only called under
/// the entry's lock, so none of them is still being written.
fn sweep_leftovers(entry: &Path, name: &str) {
    let prefix = format!(".tmp-{name}-");
    let Some(parent) = entry.parent() else { return };
    let Ok(siblings) = fs::read_dir(parent) else {
        return;
    };
    for sibling in siblings.filter_map(|s| s.ok()) {
        if sibling.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = fs::remove_dir_all(sibling.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_make_leaves_no_entry_behind() {
        let dir = tempfile::tempdir().unwrap();
        let entry = dir.path().join("k");
        let err = get_or_make(&entry, |tmp| {
            fs::write(tmp.join("half"), b"x").unwrap();
            Err(Error::Other("interrupted".into()))
        });
        assert!(err.is_err());
        assert!(!entry.exists());
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn an_interrupted_makers_leftovers_are_swept_by_the_next_maker() {
        let dir = tempfile::tempdir().unwrap();
        let leftover = dir.path().join(".tmp-k-99999");
        fs::create_dir_all(leftover.join("half")).unwrap();
        get_or_make(&dir.path().join("k"), |tmp| {
            fs::write(tmp.join("f"), b"1").unwrap();
            Ok(())
        })
        .unwrap();
        assert!(!leftover.exists());
    }

    #[test]
    fn an_existing_entry_is_not_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let entry = dir.path().join("k");
        get_or_make(&entry, |tmp| {
            fs::write(tmp.join("f"), b"1").unwrap();
            Ok(())
        })
        .unwrap();
        get_or_make(&entry, |_| panic!("made twice")).unwrap();
        assert_eq!(fs::read(entry.join("f")).unwrap(), b"1");
    }

    #[test]
    fn entries_whose_names_differ_after_a_dot_have_their_own_locks() {
        let dir = tempfile::tempdir().unwrap();
        let _held = lock(&dir.path().join("debian-6.12.1-amd64")).unwrap();
        let other = dir.path().join("debian-6.12.2-amd64");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(lock(&other).is_ok()));
        let took = rx.recv_timeout(std::time::Duration::from_secs(5));
        assert_eq!(
            took,
            Ok(true),
            "the second entry waited for the first one's lock"
        );
    }

    #[test]
    fn a_held_lock_is_not_taken_by_try_lock() {
        let dir = tempfile::tempdir().unwrap();
        let entry = dir.path().join("k");
        let held = lock(&entry).unwrap();
        let entry_again = entry.clone();
        let attempt = std::thread::spawn(move || try_lock(&entry_again).unwrap().is_some());
        assert!(!attempt.join().unwrap());
        drop(held);
        assert!(try_lock(&entry).unwrap().is_some());
    }

    #[test]
    fn concurrent_makers_publish_one_entry() {
        let dir = tempfile::tempdir().unwrap();
        let entry = dir.path().join("k");
        let made = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    get_or_make(&entry, |tmp| {
                        made.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        {
                            fs::write(tmp.join("f"), b"1").unwrap();
                            Ok(())
                        }
                    })
                    .unwrap();
                });
            }
        });
        assert_eq!(made.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
