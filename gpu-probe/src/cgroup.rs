//! The container (cgroup) memory limit that applies to this process.
//!
//! Read from the process's own cgroup (`/proc/self/cgroup`) up to the root, since a
//! parent's limit binds its children too; the smallest limit wins:
//! - cgroup v2 (unified, mounted at `/sys/fs/cgroup`): `memory.max`, usage
//!   `memory.current`, page cache that can be dropped `inactive_file` in `memory.stat`;
//! - cgroup v1 (memory controller at `/sys/fs/cgroup/memory`): `memory.limit_in_bytes`,
//!   `memory.usage_in_bytes`, `total_inactive_file` in `memory.stat`.
//!
//! "No limit" is `max` (v2) or a sentinel at least as large as physical memory (v1
//! writes `PAGE_COUNTER_MAX` pages, `9223372036854771712` with 4 KiB pages). In a
//! container without a cgroup namespace `/proc/self/cgroup` names a host path that is
//! not mounted inside; walking up to the mount root still finds the container's own
//! files there.
//!
//! The memory in use under a limit is the working set (usage minus inactive file
//! cache), as the kubelet counts it for eviction.

/// The most path components walked from the process's cgroup up to the root.
const MAX_DEPTH: usize = 64;

/// A memory limit found for this process, bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CgroupMemory {
    /// The smallest limit on the way up, bytes (less than physical memory).
    pub(crate) limit: u64,
    /// The working set of the innermost cgroup that reports usage, bytes.
    pub(crate) working_set: Option<u64>,
}

struct Layout {
    root: &'static str,
    limit: &'static str,
    usage: &'static str,
    inactive_key: &'static str,
}

const V2: Layout = Layout {
    root: "/sys/fs/cgroup",
    limit: "memory.max",
    usage: "memory.current",
    inactive_key: "inactive_file",
};
const V1: Layout = Layout {
    root: "/sys/fs/cgroup/memory",
    limit: "memory.limit_in_bytes",
    usage: "memory.usage_in_bytes",
    inactive_key: "total_inactive_file",
};

/// The memory limit for this process, through `read` (a file reader: path to text), or
/// `None` when no limit smaller than `physical` bytes applies.
pub(crate) fn memory_limit(
    read: &mut dyn FnMut(&str) -> Option<String>,
    physical: u64,
) -> Option<CgroupMemory> {
    let cgroups = read("/proc/self/cgroup")?;
    let mut best: Option<CgroupMemory> = None;
    for line in cgroups.lines() {
        // hierarchy-ID:controller-list:cgroup-path (cgroups(7))
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let layout = if id == "0" && controllers.is_empty() {
            &V2
        } else if controllers.split(',').any(|c| c == "memory") {
            &V1
        } else {
            continue;
        };
        if let Some(found) = walk(read, layout, path, physical)
            && best.is_none_or(|b| found.limit < b.limit)
        {
            best = Some(found);
        }
    }
    best
}

fn walk(
    read: &mut dyn FnMut(&str) -> Option<String>,
    layout: &Layout,
    path: &str,
    physical: u64,
) -> Option<CgroupMemory> {
    let components: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != "." && *c != "..")
        .take(MAX_DEPTH)
        .collect();
    let mut limit: Option<u64> = None;
    let mut working_set: Option<u64> = None;
    for depth in (0..=components.len()).rev() {
        let mut dir = String::from(layout.root);
        for c in &components[..depth] {
            dir.push('/');
            dir.push_str(c);
        }
        if let Some(l) = read(&format!("{dir}/{}", layout.limit)).and_then(|t| parse_limit(&t))
            && l < physical
            && limit.is_none_or(|m| l < m)
        {
            limit = Some(l);
        }
        if working_set.is_none()
            && let Some(usage) =
                read(&format!("{dir}/{}", layout.usage)).and_then(|t| t.trim().parse::<u64>().ok())
        {
            let inactive = read(&format!("{dir}/memory.stat"))
                .and_then(|s| stat_value(&s, layout.inactive_key))
                .unwrap_or(0);
            working_set = Some(usage.saturating_sub(inactive));
        }
    }
    limit.map(|limit| CgroupMemory { limit, working_set })
}

/// A limit file's value: bytes, or `None` for `max` and anything unreadable.
pub(crate) fn parse_limit(text: &str) -> Option<u64> {
    let t = text.trim();
    if t == "max" {
        return None;
    }
    t.parse().ok()
}

fn stat_value(stat: &str, key: &str) -> Option<u64> {
    stat.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const GIB: u64 = 1 << 30;

    fn files(pairs: &[(&str, &str)]) -> impl FnMut(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |p: &str| map.get(p).cloned()
    }

    #[test]
    fn v1_unlimited_sentinel_is_no_limit() {
        // what this very machine shows: a v1 memory controller with the v1 sentinel
        let mut read = files(&[
            ("/proc/self/cgroup", "4:memory:/process_api/abc\n0::/\n"),
            (
                "/sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
            (
                "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
            (
                "/sys/fs/cgroup/memory/process_api/abc/memory.usage_in_bytes",
                "1000\n",
            ),
        ]);
        assert_eq!(memory_limit(&mut read, 24 * GIB), None);
    }

    #[test]
    fn v2_max_is_no_limit_and_a_number_is_one() {
        let mut read = files(&[
            ("/proc/self/cgroup", "0::/user.slice/job\n"),
            ("/sys/fs/cgroup/user.slice/job/memory.max", "max\n"),
        ]);
        assert_eq!(memory_limit(&mut read, 24 * GIB), None);

        let mut read = files(&[
            ("/proc/self/cgroup", "0::/user.slice/job\n"),
            ("/sys/fs/cgroup/user.slice/job/memory.max", "max\n"),
            ("/sys/fs/cgroup/user.slice/memory.max", "8589934592\n"),
            (
                "/sys/fs/cgroup/user.slice/job/memory.current",
                "3221225472\n",
            ),
            (
                "/sys/fs/cgroup/user.slice/job/memory.stat",
                "anon 1\ninactive_file 1073741824\nactive_file 5\n",
            ),
        ]);
        assert_eq!(
            memory_limit(&mut read, 24 * GIB),
            Some(CgroupMemory {
                limit: 8 * GIB,
                working_set: Some(2 * GIB)
            })
        );
    }

    #[test]
    fn a_limit_above_physical_memory_is_no_limit() {
        let mut read = files(&[
            ("/proc/self/cgroup", "0::/\n"),
            ("/sys/fs/cgroup/memory.max", "68719476736\n"), // 64 GiB on a 24 GiB host
        ]);
        assert_eq!(memory_limit(&mut read, 24 * GIB), None);
    }

    #[test]
    fn container_without_cgroup_namespace_finds_the_mount_root() {
        // /proc/self/cgroup names a host path; the container sees its own cgroup at the root
        let mut read = files(&[
            (
                "/proc/self/cgroup",
                "11:cpu,cpuacct:/docker/f00\n9:memory:/docker/f00\n",
            ),
            (
                "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                "2147483648\n",
            ),
            (
                "/sys/fs/cgroup/memory/memory.usage_in_bytes",
                "1073741824\n",
            ),
            (
                "/sys/fs/cgroup/memory/memory.stat",
                "cache 5\ntotal_inactive_file 536870912\n",
            ),
        ]);
        assert_eq!(
            memory_limit(&mut read, 24 * GIB),
            Some(CgroupMemory {
                limit: 2 * GIB,
                working_set: Some(GIB / 2)
            })
        );
    }

    #[test]
    fn missing_or_garbled_files_are_no_limit() {
        assert_eq!(memory_limit(&mut files(&[]), GIB), None);
        let mut read = files(&[
            ("/proc/self/cgroup", "garbage\n0::/a\n"),
            ("/sys/fs/cgroup/a/memory.max", "12x\n"),
        ]);
        assert_eq!(memory_limit(&mut read, GIB), None);
        assert_eq!(parse_limit(" 42\n"), Some(42));
        assert_eq!(parse_limit("max"), None);
    }
}
