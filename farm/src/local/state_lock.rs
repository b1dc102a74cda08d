//! One master per state directory: an exclusive advisory lock on the directory itself,
//! and on `STATE/lock`.
//!
//! The lock is a `flock(2)` on the state directory (and one on the file `STATE/lock`
//! in it, which holds the holder's pid), taken without waiting and held for the life
//! of the master. The directory's lock is the one that counts: deleting `STATE/lock`
//! (as people do with "stale" lock files) does not let a second master in. The kernel drops it when the master's process ends,
//! however it ends (a `SIGKILL` included), so a crashed master never leaves a stale
//! lock and `--resume` after it just works. The descriptor is close-on-exec, so no
//! worker or command inherits it: the lock never outlives the master. The file holds
//! the holder's pid, for the message a second master prints.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::local::FarmError;

/// The lock file's name inside the state directory.
pub const LOCK_FILE: &str = "lock";

/// A held lock on a state directory; released when dropped or when the process ends.
#[derive(Debug)]
pub struct StateLock {
    dir: Flock<File>,
    _file: Flock<File>,
    root: PathBuf,
}

impl StateLock {
    /// Takes the lock of state directory `root` (created when missing), without
    /// waiting.
    ///
    /// # Errors
    /// (exit code 2) another master holds it: the message names the directory and the
    /// holder's pid; the directory or its lock file cannot be created or locked.
    pub fn acquire(root: &Path) -> Result<Self, FarmError> {
        let unwritable = |e: std::io::Error| {
            FarmError::input(format!(
                "state directory {} is not writable: {e}",
                root.display()
            ))
        };
        std::fs::create_dir_all(root).map_err(unwritable)?;
        let path = root.join(LOCK_FILE);
        let in_use = |holder: String| {
            FarmError::input(format!(
                "state directory {} is in use by another sturdy run ({holder}); one run owns a state directory at a time: wait for it to end, or choose another --state-dir",
                root.display()
            ))
        };
        let holder = || {
            std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| t.trim().parse::<u32>().ok())
                .map_or_else(|| "pid unknown".to_owned(), |p| format!("pid {p}"))
        };
        let dir = File::open(root).map_err(unwritable)?;
        let dir = match Flock::lock(dir, FlockArg::LockExclusiveNonblock) {
            Ok(d) => d,
            Err((_, Errno::EWOULDBLOCK)) => return Err(in_use(holder())),
            Err((_, e)) => {
                return Err(FarmError::input(format!(
                    "state directory {}: cannot lock it: {e}",
                    root.display()
                )));
            }
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(unwritable)?;
        let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(f) => f,
            // A master of an older build holds only the file's lock.
            Err((_, Errno::EWOULDBLOCK)) => return Err(in_use(holder())),
            Err((_, e)) => {
                return Err(FarmError::input(format!(
                    "state directory {}: cannot lock {}: {e}",
                    root.display(),
                    path.display()
                )));
            }
        };
        let write = |f: &mut File| -> std::io::Result<()> {
            f.set_len(0)?;
            f.seek(SeekFrom::Start(0))?;
            f.write_all(format!("{}\n", std::process::id()).as_bytes())
        };
        write(&mut file).map_err(unwritable)?;
        Ok(Self {
            dir,
            _file: file,
            root: root.to_owned(),
        })
    }

    /// Whether the directory this lock holds is still the one at its path (false once
    /// the state directory was deleted, moved or replaced).
    pub fn still_in_place(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (self.dir.metadata(), std::fs::metadata(&self.root)) {
            (Ok(held), Ok(now)) => {
                held.dev() == now.dev() && held.ino() == now.ino() && held.nlink() > 0
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_with_the_holders_pid_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("state");
        let first = StateLock::acquire(&root).unwrap();
        assert!(first.still_in_place());
        let e = StateLock::acquire(&root).unwrap_err();
        assert_eq!(e.kind(), crate::local::ErrorKind::Input);
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("(pid {})", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains(&root.display().to_string()), "{msg}");
        // Deleting the lock file does not let a second master in.
        std::fs::remove_file(root.join(LOCK_FILE)).unwrap();
        let e = StateLock::acquire(&root).unwrap_err();
        assert_eq!(e.kind(), crate::local::ErrorKind::Input);
        assert!(
            e.to_string().contains("in use by another sturdy run"),
            "{e}"
        );
        assert!(first.still_in_place());
        drop(first);
        let again = StateLock::acquire(&root).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
        assert!(!again.still_in_place());
    }
}
