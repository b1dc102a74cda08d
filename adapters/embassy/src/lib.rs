//! `sturdy-embassy`: placeholder until its issue lands; see the workspace README.
#![no_std]
