//! `sturdy-benches`: placeholder until its issue lands; see the workspace README.
