//! A directory-backed checkpoint store: crash-safe writes, verified reads, the last K
//! kept.
//!
//! The successor of the original's `CheckpointManager` (keep the newest 5, checkpoint
//! every 10 generations, generation 0 included), usable on its own for a search loop's
//! state, and the store the farm's supervisor (`sturdy_farm::supervisor`) writes its ledger
//! snapshots to.
//!
//! Layout: `DIR/EXPERIMENT/GENERATION.ckpt`, the generation as 20 decimal digits so that
//! names sort by generation. Each file is a 28-byte header then the payload:
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | magic `b"STDYCKPT"` |
//! | 8..12 | format version, `u32` little-endian (1) |
//! | 12..20 | generation, `u64` LE |
//! | 20..24 | payload length in bytes, `u32` LE |
//! | 24..28 | CRC-32 (ISO-HDLC, the zlib one) of bytes 8..24 and the payload, `u32` LE |
//!
//! Writes are crash-safe: the bytes go to a temporary file in the same directory, which
//! is fsynced, renamed over the final name, and the directory is fsynced, so that after a
//! crash at any point the store holds either the old set of checkpoints or the old set
//! plus the complete new one, never a torn file under a checkpoint's name. Reads verify
//! the magic, version, length, generation and CRC; [`CheckpointStore::load_latest`]
//! skips a corrupt checkpoint with a `tracing` warning and falls back to the next newest.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sturdy_core::ConfigError;

const MAGIC: &[u8; 8] = b"STDYCKPT";
const VERSION: u32 = 1;
const HEADER: usize = 28;
const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
const EXT: &str = "ckpt";

/// The largest payload stored, in bytes (the length field is a `u32`).
pub const MAX_PAYLOAD: usize = u32::MAX as usize;

/// How many checkpoints to keep and how often to take one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreConfig {
    /// Checkpoints kept per experiment; older ones are deleted after each save.
    pub keep_last: usize,
    /// [`CheckpointStore::should_checkpoint`] is true every `interval` generations.
    pub interval: u64,
}

impl StoreConfig {
    /// The original's defaults: keep the newest 5, checkpoint every 10 generations.
    pub const DEFAULT: Self = Self {
        keep_last: 5,
        interval: 10,
    };

    /// A validated config.
    ///
    /// # Errors
    /// `keep_last` or `interval` zero (the original crashed on an interval of 0).
    pub fn new(keep_last: usize, interval: u64) -> Result<Self, ConfigError> {
        if keep_last == 0 {
            return Err(ConfigError::new("keep_last", "must be >= 1"));
        }
        if interval == 0 {
            return Err(ConfigError::new("interval", "must be >= 1"));
        }
        Ok(Self {
            keep_last,
            interval,
        })
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why a checkpoint could not be loaded.
#[derive(Debug)]
#[non_exhaustive]
pub enum LoadError {
    /// No checkpoint of that generation exists.
    NotFound,
    /// The file exists but fails verification; the string says which check.
    Corrupt(&'static str),
    /// Reading failed.
    Io(io::Error),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotFound => f.write_str("no such checkpoint"),
            Self::Corrupt(why) => write!(f, "corrupt checkpoint: {why}"),
            Self::Io(e) => write!(f, "checkpoint read failed: {e}"),
        }
    }
}

impl std::error::Error for LoadError {}

/// A checkpoint read back and verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    /// Its generation.
    pub generation: u64,
    /// Its payload, exactly as saved.
    pub bytes: Vec<u8>,
}

/// A checkpoint store rooted at a directory.
#[derive(Clone, Debug)]
pub struct CheckpointStore {
    root: PathBuf,
    config: StoreConfig,
}

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn check_experiment(name: &str) -> io::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "experiment name must be 1..=128 of [A-Za-z0-9._-], not starting with '.'",
        ))
    }
}

/// Encodes a checkpoint file: header then payload.
fn encode(generation: u64, bytes: &[u8]) -> io::Result<Vec<u8>> {
    let len = u32::try_from(bytes.len()).map_err(|_| invalid("payload longer than 4 GiB"))?;
    let mut out = Vec::with_capacity(HEADER + bytes.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&generation.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    let mut digest = CRC32.digest();
    digest.update(&out[8..24]);
    digest.update(bytes);
    out.extend_from_slice(&digest.finalize().to_le_bytes());
    out.extend_from_slice(bytes);
    Ok(out)
}

/// Verifies and decodes a checkpoint file's bytes.
fn decode(file: &[u8], expected_generation: u64) -> Result<Vec<u8>, LoadError> {
    if file.len() < HEADER {
        return Err(LoadError::Corrupt("truncated header"));
    }
    if &file[..8] != MAGIC {
        return Err(LoadError::Corrupt("bad magic"));
    }
    let word = |at: usize| u32::from_le_bytes(file[at..at + 4].try_into().unwrap_or([0; 4]));
    if word(8) != VERSION {
        return Err(LoadError::Corrupt("unknown format version"));
    }
    let generation = u64::from_le_bytes(file[12..20].try_into().unwrap_or([0; 8]));
    let len = word(20) as usize;
    if file.len() - HEADER != len {
        return Err(LoadError::Corrupt("length does not match the file size"));
    }
    let mut digest = CRC32.digest();
    digest.update(&file[8..24]);
    digest.update(&file[HEADER..]);
    if digest.finalize() != word(24) {
        return Err(LoadError::Corrupt("CRC-32 mismatch"));
    }
    if generation != expected_generation {
        return Err(LoadError::Corrupt(
            "generation does not match the file name",
        ));
    }
    Ok(file[HEADER..].to_vec())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl CheckpointStore {
    /// Opens (creating it if needed) a store rooted at `root`.
    ///
    /// # Errors
    /// The directory cannot be created.
    pub fn open(root: impl Into<PathBuf>, config: StoreConfig) -> io::Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root)?;
        Ok(Self { root, config })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The configuration.
    pub const fn config(&self) -> StoreConfig {
        self.config
    }

    /// Whether generation `generation` is due for a checkpoint: every `interval`
    /// generations, generation 0 included (the original's rule, `g % interval == 0`).
    pub fn should_checkpoint(&self, generation: u64) -> bool {
        generation.is_multiple_of(self.config.interval)
    }

    fn dir(&self, experiment: &str) -> io::Result<PathBuf> {
        check_experiment(experiment)?;
        Ok(self.root.join(experiment))
    }

    fn file_name(generation: u64) -> String {
        format!("{generation:020}.{EXT}")
    }

    /// Saves `bytes` as generation `generation` of `experiment`, crash-safely
    /// (temporary file, fsync, rename, fsync of the directory), replacing a checkpoint
    /// of the same generation, then deletes all but the newest `keep_last`. Returns
    /// the path written.
    ///
    /// # Errors
    /// An invalid experiment name, a payload over [`MAX_PAYLOAD`], or an I/O error (a
    /// root directory deleted since [`open`](Self::open) is `NotFound`: it is never
    /// created again here); on error the previous checkpoints are untouched.
    pub fn save(&self, experiment: &str, generation: u64, bytes: &[u8]) -> io::Result<PathBuf> {
        let dir = self.dir(experiment)?;
        let encoded = encode(generation, bytes)?;
        // Never the root: a store whose directory was deleted under it is not
        // brought back (its owner meant it gone; see `open`).
        let created = match fs::create_dir(&dir) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(e),
        };
        if created {
            sync_dir(&self.root)?;
        }
        let path = dir.join(Self::file_name(generation));
        let tmp = dir.join(format!(
            ".{}.tmp.{}",
            Self::file_name(generation),
            std::process::id()
        ));
        let written = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(&encoded)?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, &path)?;
            sync_dir(&dir)
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        self.keep_last(experiment, self.config.keep_last)?;
        Ok(path)
    }

    /// The generations stored for `experiment`, oldest first (verification happens on
    /// load, not here). An experiment never saved lists nothing.
    ///
    /// # Errors
    /// An invalid experiment name or a read error on the directory.
    pub fn list(&self, experiment: &str) -> io::Result<Vec<u64>> {
        let dir = self.dir(experiment)?;
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut gens = Vec::new();
        for entry in entries {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(stem) = name.strip_suffix(".ckpt")
                && stem.len() == 20
                && let Ok(g) = stem.parse::<u64>()
            {
                gens.push(g);
            }
        }
        gens.sort_unstable();
        Ok(gens)
    }

    /// Loads and verifies generation `generation` of `experiment`.
    ///
    /// # Errors
    /// [`LoadError::NotFound`], [`LoadError::Corrupt`] naming the failed check, or
    /// [`LoadError::Io`].
    pub fn load(&self, experiment: &str, generation: u64) -> Result<Vec<u8>, LoadError> {
        let path = self
            .dir(experiment)
            .map_err(LoadError::Io)?
            .join(Self::file_name(generation));
        let file = match fs::read(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(LoadError::NotFound),
            Err(e) => return Err(LoadError::Io(e)),
        };
        decode(&file, generation)
    }

    /// Loads the newest checkpoint of `experiment` that verifies; each corrupt one met on
    /// the way is skipped with a `tracing` warning. `Ok(None)` when none is valid.
    ///
    /// # Errors
    /// An invalid experiment name or a read error on the directory.
    pub fn load_latest(&self, experiment: &str) -> io::Result<Option<Loaded>> {
        for generation in self.list(experiment)?.into_iter().rev() {
            match self.load(experiment, generation) {
                Ok(bytes) => return Ok(Some(Loaded { generation, bytes })),
                Err(LoadError::NotFound) => {}
                Err(e) => tracing::warn!(
                    experiment,
                    generation,
                    error = %e,
                    "skipping checkpoint that fails verification"
                ),
            }
        }
        Ok(None)
    }

    /// Deletes generation `generation`; returns whether it existed.
    ///
    /// # Errors
    /// An invalid experiment name or an I/O error.
    pub fn delete(&self, experiment: &str, generation: u64) -> io::Result<bool> {
        let path = self.dir(experiment)?.join(Self::file_name(generation));
        match fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes every checkpoint of `experiment`; returns how many.
    ///
    /// # Errors
    /// An invalid experiment name or an I/O error.
    pub fn delete_all(&self, experiment: &str) -> io::Result<usize> {
        let mut n = 0;
        for g in self.list(experiment)? {
            n += usize::from(self.delete(experiment, g)?);
        }
        Ok(n)
    }

    /// Deletes all but the newest `keep` checkpoints of `experiment`; returns how many
    /// were deleted.
    ///
    /// # Errors
    /// An invalid experiment name or an I/O error.
    pub fn keep_last(&self, experiment: &str, keep: usize) -> io::Result<usize> {
        let gens = self.list(experiment)?;
        let excess = gens.len().saturating_sub(keep);
        let mut n = 0;
        for g in &gens[..excess] {
            n += usize::from(self.delete(experiment, *g)?);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(keep: usize) -> (tempfile::TempDir, CheckpointStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = CheckpointStore::open(dir.path().join("ckpt"), StoreConfig::new(keep, 10).unwrap())
            .unwrap();
        (dir, s)
    }

    #[test]
    fn save_load_list_and_keep_last() {
        let (_d, s) = store(3);
        for g in [0u64, 10, 20, 30, 40] {
            s.save("search", g, format!("state {g}").as_bytes())
                .unwrap();
        }
        assert_eq!(s.list("search").unwrap(), vec![20, 30, 40]);
        assert_eq!(s.load("search", 30).unwrap(), b"state 30");
        assert!(matches!(s.load("search", 10), Err(LoadError::NotFound)));
        let latest = s.load_latest("search").unwrap().unwrap();
        assert_eq!(
            (latest.generation, latest.bytes),
            (40, b"state 40".to_vec())
        );
        assert!(s.load_latest("other").unwrap().is_none());
        assert!(s.delete("search", 40).unwrap());
        assert!(!s.delete("search", 40).unwrap());
        assert_eq!(s.load_latest("search").unwrap().unwrap().generation, 30);
        assert_eq!(s.delete_all("search").unwrap(), 2);
        assert!(s.list("search").unwrap().is_empty());
        // No temporary file is left behind.
        let leftovers: Vec<_> = fs::read_dir(s.root().join("search")).unwrap().collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn a_deleted_root_is_not_created_again() {
        let (_d, s) = store(3);
        s.save("exp", 1, b"one").unwrap();
        fs::remove_dir_all(s.root()).unwrap();
        let e = s.save("exp", 2, b"two").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(!s.root().exists());
    }

    #[test]
    fn corrupt_newest_is_skipped_for_the_previous_one() {
        let (_d, s) = store(5);
        s.save("exp", 1, b"good one").unwrap();
        let newest = s.save("exp", 2, b"will be damaged").unwrap();
        let mut bytes = fs::read(&newest).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        fs::write(&newest, &bytes).unwrap();
        assert!(matches!(
            s.load("exp", 2),
            Err(LoadError::Corrupt("CRC-32 mismatch"))
        ));
        let l = s.load_latest("exp").unwrap().unwrap();
        assert_eq!((l.generation, l.bytes.as_slice()), (1, &b"good one"[..]));
    }

    #[test]
    fn every_corruption_is_detected() {
        let good = encode(7, b"payload").unwrap();
        assert_eq!(decode(&good, 7).unwrap(), b"payload");
        assert!(matches!(
            decode(&good[..10], 7),
            Err(LoadError::Corrupt("truncated header"))
        ));
        assert!(matches!(
            decode(&good[..good.len() - 1], 7),
            Err(LoadError::Corrupt("length does not match the file size"))
        ));
        let mut bad_magic = good.clone();
        bad_magic[0] = b'X';
        assert!(matches!(
            decode(&bad_magic, 7),
            Err(LoadError::Corrupt("bad magic"))
        ));
        let mut bad_version = good.clone();
        bad_version[8] = 9;
        assert!(matches!(
            decode(&bad_version, 7),
            Err(LoadError::Corrupt("unknown format version"))
        ));
        assert!(matches!(
            decode(&good, 8),
            Err(LoadError::Corrupt(
                "generation does not match the file name"
            ))
        ));
        for i in 12..good.len() {
            let mut flipped = good.clone();
            flipped[i] ^= 0x40;
            assert!(
                decode(&flipped, 7).is_err(),
                "bit flip at byte {i} not caught"
            );
        }
    }

    #[test]
    fn should_checkpoint_follows_the_original() {
        let (_d, s) = store(5);
        let due: Vec<u64> = (0..=25).filter(|g| s.should_checkpoint(*g)).collect();
        assert_eq!(due, vec![0, 10, 20]);
        assert_eq!(StoreConfig::new(5, 0).unwrap_err().field(), "interval");
        assert_eq!(StoreConfig::new(0, 10).unwrap_err().field(), "keep_last");
    }

    #[test]
    fn bad_experiment_names_are_refused() {
        let (_d, s) = store(5);
        for name in ["", "../escape", ".hidden", "a/b"] {
            assert_eq!(
                s.save(name, 0, b"x").unwrap_err().kind(),
                io::ErrorKind::InvalidInput
            );
        }
    }
}
