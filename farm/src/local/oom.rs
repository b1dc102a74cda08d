//! Out-of-memory detection from the cgroup's OOM-kill counter: cgroup v2's
//! `memory.events`, or cgroup v1's `memory.oom_control`.
//!
//! Linux counts every process of a cgroup (and, in v2, its descendants) killed by an OOM
//! killer: `oom_kill N` in v2's `memory.events`, and the same line in v1's
//! `memory.oom_control` (kernels 4.13 and later). A worker reads the counter of its own
//! cgroup before and after a command; a command that died by `SIGKILL` while the
//! counter rose is classified out of memory.
//!
//! Which file: the v2 cgroup is the `0::PATH` line of `/proc/self/cgroup`, under
//! `/sys/fs/cgroup`; the v1 memory cgroup is the line whose controllers include
//! `memory` (`4:memory:PATH`), under the mount of the v1 memory controller found in
//! `/proc/self/mountinfo` (`/sys/fs/cgroup/memory` when none is listed). The first of
//! the two whose file holds an `oom_kill` line is used (a hybrid host lists a `0::`
//! line whose cgroup has no memory controller).
//!
//! Limits: another process of the same cgroup killed at the same moment is
//! indistinguishable; with neither file readable (or a v1 kernel before 4.13) the
//! counter is unknown and such a `SIGKILL` is classified unknown instead.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The cgroup v2 `memory.events` of the process whose `/proc/PID/cgroup` is `cgroup`.
pub fn v2_events_path(cgroup: &str) -> Option<PathBuf> {
    let rel = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(
        Path::new("/sys/fs/cgroup")
            .join(rel.trim_start_matches('/'))
            .join("memory.events"),
    )
}

/// The cgroup v1 `memory.oom_control` of the process whose `/proc/PID/cgroup` is
/// `cgroup` and `/proc/PID/mountinfo` is `mountinfo`.
pub fn v1_oom_control_path(cgroup: &str, mountinfo: &str) -> Option<PathBuf> {
    // `ID:CONTROLLERS:PATH`, CONTROLLERS comma-separated (`4:memory:/user.slice`).
    let rel = cgroup.lines().find_map(|l| {
        let mut it = l.splitn(3, ':');
        let (_, controllers, path) = (it.next()?, it.next()?, it.next()?);
        controllers
            .split(',')
            .any(|c| c == "memory")
            .then_some(path)
    })?;
    // `ID PARENT MAJ:MIN ROOT MOUNT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS`; the
    // v1 memory controller's mount has type `cgroup` and `memory` among its super
    // options. Its ROOT is the cgroup seen at MOUNT (a container's own, say), so PATH
    // is relative to it.
    let (root, mount) = mountinfo
        .lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mut r = right.split_whitespace();
            let (fstype, _source, opts) = (r.next()?, r.next()?, r.next()?);
            if fstype != "cgroup" || !opts.split(',').any(|o| o == "memory") {
                return None;
            }
            let mut f = left.split_whitespace().skip(3);
            Some((f.next()?.to_owned(), PathBuf::from(f.next()?)))
        })
        .unwrap_or_else(|| ("/".to_owned(), PathBuf::from("/sys/fs/cgroup/memory")));
    let below = if root == "/" {
        rel
    } else {
        rel.strip_prefix(root.as_str()).unwrap_or(rel)
    };
    Some(
        mount
            .join(below.trim_start_matches('/'))
            .join("memory.oom_control"),
    )
}

/// Parses the `oom_kill` counter out of a v2 `memory.events` or v1
/// `memory.oom_control` text.
pub fn parse_oom_kill(events: &str) -> Option<u64> {
    events.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next()? == "oom_kill").then(|| it.next()?.parse().ok())?
    })
}

fn counter_file() -> Option<PathBuf> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    [
        v2_events_path(&cgroup),
        v1_oom_control_path(&cgroup, &mountinfo),
    ]
    .into_iter()
    .flatten()
    .find(|p| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|t| parse_oom_kill(&t))
            .is_some()
    })
}

/// The current OOM-kill count of this process's cgroup, or `None` when unknown. The
/// counter's file is looked up and opened once per process, and read afresh from its
/// start at each call (one `pread`).
pub fn oom_kill_count() -> Option<u64> {
    static FILE: OnceLock<Option<File>> = OnceLock::new();
    let file = FILE
        .get_or_init(|| File::open(counter_file()?).ok())
        .as_ref()?;
    // Both files are a few short lines (v2's `memory.events`: six).
    let mut buf = [0u8; 1024];
    let n = file.read_at(&mut buf, 0).ok()?;
    parse_oom_kill(std::str::from_utf8(&buf[..n]).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_v2_counter() {
        let text = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(parse_oom_kill(text), Some(2));
        assert_eq!(parse_oom_kill("oom 1\n"), None);
        assert_eq!(parse_oom_kill("oom_kill x\n"), None);
    }

    #[test]
    fn parses_the_v1_counter() {
        let text = "oom_kill_disable 0\nunder_oom 0\noom_kill 7\n";
        assert_eq!(parse_oom_kill(text), Some(7));
        // Before Linux 4.13 the file has no counter: unknown, not zero.
        assert_eq!(parse_oom_kill("oom_kill_disable 0\nunder_oom 1\n"), None);
    }

    const V1_CGROUP: &str =
        "9:name=systemd:/\n8:pids:/\n4:memory:/batch/job7\n1:cpu,cpuacct:/\n0::/\n";

    #[test]
    fn finds_the_v2_file() {
        assert_eq!(
            v2_events_path("0::/user.slice/user-1000.slice\n"),
            Some(PathBuf::from(
                "/sys/fs/cgroup/user.slice/user-1000.slice/memory.events"
            ))
        );
        assert_eq!(v2_events_path("4:memory:/a\n"), None);
    }

    #[test]
    fn finds_the_v1_file_under_the_memory_controllers_mount() {
        let mountinfo = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,nosuid shared:9 - cgroup cgroup rw,memory
";
        assert_eq!(
            v1_oom_control_path(V1_CGROUP, mountinfo),
            Some(PathBuf::from(
                "/sys/fs/cgroup/memory/batch/job7/memory.oom_control"
            ))
        );
        // Controllers mounted together, elsewhere.
        let joint = "40 1 0:40 / /cg/mem rw - cgroup none rw,memory,hugetlb\n";
        let cgroup = "3:hugetlb,memory:/x\n";
        assert_eq!(
            v1_oom_control_path(cgroup, joint),
            Some(PathBuf::from("/cg/mem/x/memory.oom_control"))
        );
        // A container's mount whose root is its own cgroup.
        let container =
            "50 1 0:50 /batch/job7 /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n";
        assert_eq!(
            v1_oom_control_path(V1_CGROUP, container),
            Some(PathBuf::from("/sys/fs/cgroup/memory/memory.oom_control"))
        );
        // No mountinfo: the usual mount point.
        assert_eq!(
            v1_oom_control_path(V1_CGROUP, ""),
            Some(PathBuf::from(
                "/sys/fs/cgroup/memory/batch/job7/memory.oom_control"
            ))
        );
        // No v1 memory controller: none.
        assert_eq!(v1_oom_control_path("0::/\n", mountinfo), None);
        assert_eq!(
            v1_oom_control_path("5:memory_x:/a\n", mountinfo),
            None,
            "only the controller named exactly memory"
        );
    }
}
