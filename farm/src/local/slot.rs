//! A worker slot of the local farm: its label and the GPUs it sees.

/// A worker slot (one `--slots` entry: `cpu` or `gpu:IDS`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    /// The label shown in the journal and summary (`cpu`, `gpu:0`).
    pub label: String,
    /// `CUDA_VISIBLE_DEVICES` for the worker, if any (GPU indices joined by `,`).
    pub cuda_visible_devices: Option<String>,
}
