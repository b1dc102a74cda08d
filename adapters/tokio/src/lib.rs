//! `sturdy-tokio`: placeholder until its issue lands; see the workspace README.

pub mod checkpoint_store;
pub mod supervisor;
