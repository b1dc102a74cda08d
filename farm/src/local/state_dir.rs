//! The state directory of a run: what it holds, and the checks that keep one run's
//! state from being overwritten by another.
//!
//! ```text
//! STATE/run.toml          the run's identity: format, task-list fingerprint, task count
//! STATE/lock              held (flock) by the one master that owns the directory
//! STATE/journal.tsv       every attempt (see `journal`)
//! STATE/checkpoints/run/  ledger checkpoints (crash-safe, last K kept)
//! STATE/out/T.A.out|err   stdout and stderr of attempt A of task T (`.out` created as
//!                         the attempt starts, `.err` only if it writes to stderr; once
//!                         the task ended: only its last attempt's stderr tail, empty
//!                         for a quiet one, see `run`)
//! STATE/amended.tsv       earlier commands of tasks that --resume-failed gave a new text
//! STATE/blank.out         an empty file: a quiet attempt's `.out` (and the mark it
//!                         becomes) is a hard link to it, so that it allocates no inode
//!                         (see `worker`); the file is replaced when its links run out
//! ```
//!
//! A fresh run refuses a directory that already holds a run (pass `--resume`, or pick
//! another `--state-dir`), and a non-empty directory that holds no run (`--state-dir .`
//! would otherwise mix a journal and outputs into the files there, or read a stray
//! `journal.tsv` as this run's history); `--resume` refuses a directory made for a
//! different task list. The refusals happen before anything is written (but the lock
//! file: a directory that is empty or holds a run is locked before it is read, see
//! `state_lock`).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::local::FarmError;
use crate::local::state_lock::{LOCK_FILE, StateLock};

const FORMAT: u32 = 1;

/// The identity of a run, stored as `run.toml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct RunMeta {
    format: u32,
    /// CRC-64 fingerprint of the task list, hexadecimal.
    fingerprint: String,
    tasks: usize,
    /// Where the tasks came from, for people.
    source: String,
}

/// An opened, validated state directory.
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
    /// Whether a previous run's state was found (a resume).
    pub resumed: bool,
    /// The directory's lock, held while any clone lives.
    lock: Arc<StateLock>,
}

/// The default state directory for a task list: `.sturdy/<fingerprint>`.
pub fn default_path(fingerprint: u64) -> PathBuf {
    PathBuf::from(".sturdy").join(format!("{fingerprint:016x}"))
}

impl StateDir {
    /// Opens `root` for a run of a task list with this fingerprint and length.
    ///
    /// # Errors
    /// (exit code 2) the directory cannot be created or written; it holds a run and
    /// `resume` is false; `resume` is true and it holds a run of a different task list.
    pub fn open(
        root: &Path,
        fingerprint: u64,
        tasks: usize,
        source: &str,
        resume: bool,
    ) -> Result<Self, FarmError> {
        let meta_path = root.join("run.toml");
        let unwritable = |e: std::io::Error| {
            FarmError::input(format!(
                "state directory {} is not writable: {e}",
                root.display()
            ))
        };
        // (A `.run.toml.tmp` is what a fresh run that died writing `run.toml` leaves.)
        // (`lock` is what a master that never wrote `run.toml` leaves.)
        if !meta_path.exists()
            && let Ok(entries) = fs::read_dir(root)
            && let Some(entry) = entries
                .filter_map(Result::ok)
                .find(|e| e.file_name() != ".run.toml.tmp" && e.file_name() != LOCK_FILE)
        {
            return Err(FarmError::input(format!(
                "state directory {} is not empty and holds no sturdy run (it has {}); choose a new or empty --state-dir",
                root.display(),
                entry.file_name().to_string_lossy()
            )));
        }
        // Everything below runs under the lock: one master per directory.
        let lock = Arc::new(StateLock::acquire(root)?);
        let existing = match fs::read_to_string(&meta_path) {
            Ok(text) => Some(toml::from_str::<RunMeta>(&text).map_err(|e| {
                FarmError::input(format!(
                    "state directory {} holds an unreadable run.toml ({e}); refusing to touch it",
                    root.display()
                ))
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
                return Err(FarmError::input(format!(
                    "state directory {} is not a directory",
                    root.display()
                )));
            }
            Err(e) => return Err(unwritable(e)),
        };
        let want = format!("{fingerprint:016x}");
        match (&existing, resume) {
            (Some(meta), false) => {
                return Err(FarmError::input(format!(
                    "state directory {} already holds a run of {} tasks from {}; pass --resume to continue it, or choose another --state-dir",
                    root.display(),
                    meta.tasks,
                    meta.source
                )));
            }
            (Some(meta), true) if meta.fingerprint != want || meta.tasks != tasks => {
                return Err(FarmError::input(format!(
                    "--resume: state directory {} was made for a different task list ({} tasks from {}, fingerprint {}; this list: {tasks} tasks, fingerprint {want}); nothing was changed",
                    root.display(),
                    meta.tasks,
                    meta.source,
                    meta.fingerprint
                )));
            }
            (Some(meta), true) if meta.format != FORMAT => {
                return Err(FarmError::input(format!(
                    "state directory {} has format {}, this sturdy reads format {FORMAT}",
                    root.display(),
                    meta.format
                )));
            }
            _ => {}
        }
        fs::create_dir_all(root).map_err(unwritable)?;
        if existing.is_none() {
            let meta = RunMeta {
                format: FORMAT,
                fingerprint: want,
                tasks,
                source: source.to_owned(),
            };
            let text = toml::to_string(&meta).map_err(|e| FarmError::runtime(e.to_string()))?;
            let tmp = root.join(".run.toml.tmp");
            let write = || -> std::io::Result<()> {
                let mut f = fs::File::create(&tmp)?;
                f.write_all(text.as_bytes())?;
                f.sync_all()?;
                fs::rename(&tmp, &meta_path)?;
                fs::File::open(root)?.sync_all()
            };
            write().map_err(unwritable)?;
        }
        // After run.toml, so that a directory this fails in is recognised as a run.
        fs::create_dir_all(root.join("out")).map_err(unwritable)?;
        fs::create_dir_all(root.join("checkpoints")).map_err(unwritable)?;
        Ok(Self {
            root: root.to_owned(),
            resumed: existing.is_some(),
            lock,
        })
    }

    /// The journal file.
    pub fn journal(&self) -> PathBuf {
        self.root.join("journal.tsv")
    }

    /// `--resume-failed`'s record of the earlier commands of tasks it gave a new text.
    pub fn amended(&self) -> PathBuf {
        self.root.join("amended.tsv")
    }

    /// The fingerprint and task count recorded in `root`'s `run.toml`, if it holds a
    /// readable one (read without the lock: [`StateDir::open`] checks again under it).
    pub fn recorded(root: &Path) -> Option<(u64, usize)> {
        let text = fs::read_to_string(root.join("run.toml")).ok()?;
        let meta = toml::from_str::<RunMeta>(&text).ok()?;
        Some((u64::from_str_radix(&meta.fingerprint, 16).ok()?, meta.tasks))
    }

    /// Records in `run.toml` that the directory now holds a run of the list with this
    /// fingerprint (`--resume-failed`), atomically.
    ///
    /// # Errors
    /// `run.toml` cannot be read, written or synced.
    pub fn set_fingerprint(&self, fingerprint: u64) -> std::io::Result<()> {
        let meta_path = self.root.join("run.toml");
        let mut meta = toml::from_str::<RunMeta>(&fs::read_to_string(&meta_path)?)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        meta.fingerprint = format!("{fingerprint:016x}");
        let text = toml::to_string(&meta)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let tmp = self.root.join(".run.toml.tmp");
        let mut f = fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, &meta_path)?;
        fs::File::open(&self.root)?.sync_all()
    }

    /// The checkpoint store's root.
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    /// Output file of one attempt's stream (`out` or `err`).
    pub fn output(&self, task: u32, attempt: u32, stream: &str) -> PathBuf {
        self.root
            .join("out")
            .join(format!("{task}.{attempt}.{stream}"))
    }

    /// The empty file that quiet attempts' `out/T.A.out` files are hard links to
    /// (`STATE/blank.out`; made by the workers when missing).
    pub fn blank(&self) -> PathBuf {
        self.root.join("blank.out")
    }

    /// The root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether the directory this run locked is still at its path (false once it was
    /// deleted, moved or replaced under the running master).
    pub fn still_in_place(&self) -> bool {
        self.lock.still_in_place()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_then_refused_then_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("state");
        let s = StateDir::open(&root, 0xabc, 3, "t.txt", false).unwrap();
        assert!(!s.resumed);
        assert!(root.join("run.toml").exists());
        let e = StateDir::open(&root, 0xabc, 3, "t.txt", true).unwrap_err();
        assert!(
            e.to_string().contains("in use by another sturdy run"),
            "{e}"
        );
        drop(s);
        let e = StateDir::open(&root, 0xabc, 3, "t.txt", false).unwrap_err();
        assert!(e.to_string().contains("--resume"), "{e}");
        assert_eq!(e.kind(), crate::local::ErrorKind::Input);
        let resumed = StateDir::open(&root, 0xabc, 3, "t.txt", true).unwrap();
        assert!(resumed.resumed);
        drop(resumed);
        let before = fs::read_to_string(root.join("run.toml")).unwrap();
        let e = StateDir::open(&root, 0xdef, 3, "u.txt", true).unwrap_err();
        assert!(e.to_string().contains("different task list"), "{e}");
        assert_eq!(fs::read_to_string(root.join("run.toml")).unwrap(), before);
    }

    #[test]
    fn a_non_empty_directory_without_a_run_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("journal.tsv"), "precious\n").unwrap();
        for resume in [false, true] {
            let e = StateDir::open(dir.path(), 1, 1, "t", resume).unwrap_err();
            assert_eq!(e.kind(), crate::local::ErrorKind::Input);
            assert!(
                e.to_string()
                    .contains("holds no sturdy run (it has journal.tsv)"),
                "{e}"
            );
        }
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["journal.tsv"]);
        assert_eq!(
            fs::read_to_string(dir.path().join("journal.tsv")).unwrap(),
            "precious\n"
        );
        let empty = dir.path().join("empty");
        fs::create_dir(&empty).unwrap();
        assert!(!StateDir::open(&empty, 1, 1, "t", false).unwrap().resumed);
    }

    #[test]
    fn unwritable_directory_is_an_input_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain-file");
        fs::write(&file, "x").unwrap();
        let e = StateDir::open(&file.join("state"), 1, 1, "t", false).unwrap_err();
        assert_eq!(e.kind(), crate::local::ErrorKind::Input);
        assert!(e.to_string().contains("state directory"), "{e}");
    }
}
