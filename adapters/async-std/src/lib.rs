//! `sturdy-async-std`: placeholder until its issue lands; see the workspace README.
