//! `sturdy-tokio`: placeholder until its issue lands; see the workspace README.
