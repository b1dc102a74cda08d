//! Out-of-memory detection from the cgroup v2 `memory.events` file.
//!
//! Linux counts, in `memory.events`, every process of a cgroup (and its descendants)
//! killed by any OOM killer (`oom_kill N`). A worker reads the counter of its own cgroup
//! before and after a command; a command that died by `SIGKILL` while the counter rose is
//! classified out of memory. Limits: another process of the same cgroup killed at the
//! same moment is indistinguishable; without cgroup v2 (no `0::` line in
//! `/proc/self/cgroup`, or an unreadable file) the counter is unknown and such a
//! `SIGKILL` is classified unknown instead.

use std::path::PathBuf;
use std::sync::OnceLock;

/// The cgroup v2 directory of this process, from `/proc/self/cgroup`.
fn cgroup_dir() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(PathBuf::from("/sys/fs/cgroup").join(rel.trim_start_matches('/')))
}

/// Parses the `oom_kill` counter out of a `memory.events` text.
pub(crate) fn parse_oom_kill(events: &str) -> Option<u64> {
    events.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next()? == "oom_kill").then(|| it.next()?.parse().ok())?
    })
}

/// The current OOM-kill count of this process's cgroup, or `None` when unknown. The
/// cgroup's path is looked up once per process.
pub(crate) fn oom_kill_count() -> Option<u64> {
    static EVENTS: OnceLock<Option<PathBuf>> = OnceLock::new();
    let path = EVENTS.get_or_init(|| cgroup_dir().map(|d| d.join("memory.events")));
    let text = std::fs::read_to_string(path.as_ref()?).ok()?;
    parse_oom_kill(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_counter() {
        let text = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(parse_oom_kill(text), Some(2));
        assert_eq!(parse_oom_kill("oom 1\n"), None);
        assert_eq!(parse_oom_kill("oom_kill x\n"), None);
    }
}
