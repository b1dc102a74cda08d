//! Which mounted filesystems are judged: pseudo filesystems skipped, one filesystem
//! mounted twice counted once, the mounts to judge configurable (the original
//! hard-coded `/`).

use crate::source::MountReading;

/// Filesystem types that hold no user data (kernel interfaces, memory-backed or
/// read-only images), after node_exporter's default `fs-types-exclude` and sysinfo's
/// own list. `tmpfs` is skipped unless a mount is asked for by name.
pub const PSEUDO_FILESYSTEMS: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fusectl",
    "hugetlbfs",
    "iso9660",
    "mqueue",
    "nsfs",
    "proc",
    "procfs",
    "pstore",
    "ramfs",
    "rootfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
];

/// Mount-point prefixes of kernel interfaces, skipped whatever their type.
const PSEUDO_PREFIXES: &[&str] = &["/proc", "/sys", "/dev"];

/// Which mounts a [`Probe`](crate::Probe) judges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum MountSelection {
    /// Every real filesystem (pseudo filesystems skipped), each counted once.
    #[default]
    All,
    /// Only these mount points (exact paths such as `/` or `/data`), in this order,
    /// each filesystem counted once. A listed mount point is judged even if its type
    /// is a pseudo filesystem (`tmpfs` at `/dev/shm`, say); one that is not mounted
    /// stays in the sample with its sizes unknown (`None`), so that the health rules
    /// report it rather than lose it.
    Only(Vec<String>),
}

/// Whether `m` is a pseudo filesystem (by type or by mount point).
pub fn is_pseudo(m: &MountReading) -> bool {
    PSEUDO_FILESYSTEMS.contains(&m.fs_type.as_str())
        || PSEUDO_PREFIXES
            .iter()
            .any(|p| m.mount_point == *p || m.mount_point.starts_with(&format!("{p}/")))
}

/// Two mounts are one filesystem when they share a non-zero filesystem id
/// (`statvfs` `f_fsid`; an overlay reports the id of the filesystem under it) or the
/// same block device (`/dev/...`).
fn same_filesystem(a: &MountReading, b: &MountReading) -> bool {
    let same_id = matches!((a.fs_id, b.fs_id), (Some(x), Some(y)) if x == y && x != 0);
    let same_dev = a.device.starts_with("/dev/") && a.device == b.device;
    same_id || same_dev
}

/// The mounts to judge from everything the system listed: filtered by `selection`,
/// pseudo filesystems skipped (under [`MountSelection::All`]), and each filesystem once.
/// Under `All` the mount with the shortest path is kept (`/` rather than `/etc/hosts`);
/// under `Only` the first listed, and a listed path that is not mounted comes back with
/// no device, no type and unknown sizes.
pub fn select_mounts(all: &[MountReading], selection: &MountSelection) -> Vec<MountReading> {
    let missing: Vec<MountReading>;
    let candidates: Vec<&MountReading> = match selection {
        MountSelection::All => {
            let mut v: Vec<&MountReading> = all.iter().filter(|m| !is_pseudo(m)).collect();
            // stable: equal lengths keep the system's order
            v.sort_by_key(|m| m.mount_point.len());
            v
        }
        MountSelection::Only(paths) => {
            missing = paths
                .iter()
                .map(|p| MountReading {
                    mount_point: p.clone(),
                    ..MountReading::default()
                })
                .collect();
            paths
                .iter()
                .zip(&missing)
                .map(|(p, absent)| {
                    // the last mount on a path is the one visible there
                    all.iter()
                        .rev()
                        .find(|m| &m.mount_point == p)
                        .unwrap_or(absent)
                })
                .collect()
        }
    };
    let mut kept: Vec<MountReading> = Vec::new();
    for m in candidates {
        if !kept
            .iter()
            .any(|k| same_filesystem(k, m) || k.mount_point == m.mount_point)
        {
            kept.push(m.clone());
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(dev: &str, fs: &str, at: &str, total: u64, id: Option<u64>) -> MountReading {
        MountReading {
            device: dev.into(),
            fs_type: fs.into(),
            mount_point: at.into(),
            total_bytes: Some(total),
            available_bytes: Some(total / 2),
            fs_id: id,
        }
    }

    fn container_mounts() -> Vec<MountReading> {
        vec![
            mount("overlay", "overlay", "/", 100, Some(0xdc83)),
            mount("proc", "proc", "/proc", 0, None),
            mount("tmpfs", "tmpfs", "/dev", 64, Some(1)),
            mount("shm", "tmpfs", "/dev/shm", 64, Some(2)),
            mount("/dev/sda1", "ext4", "/etc/resolv.conf", 100, Some(0xdc83)),
            mount("/dev/sda1", "ext4", "/etc/hostname", 100, Some(0xdc83)),
            mount("/dev/sda1", "ext4", "/etc/hosts", 100, Some(0xdc83)),
            mount("cgroup", "cgroup2", "/sys/fs/cgroup", 0, None),
            mount("/dev/nvme1n1", "xfs", "/data", 500, Some(0x77)),
        ]
    }

    fn points(v: &[MountReading]) -> Vec<&str> {
        v.iter().map(|m| m.mount_point.as_str()).collect()
    }

    #[test]
    fn overlay_plus_bind_mounts_of_one_filesystem_count_once() {
        let kept = select_mounts(&container_mounts(), &MountSelection::All);
        assert_eq!(points(&kept), ["/", "/data"]);
        assert_eq!(kept[0].total_bytes, Some(100));
    }

    #[test]
    fn same_block_device_without_ids_counts_once() {
        let all = vec![
            mount("/dev/sda1", "ext4", "/srv/a", 10, None),
            mount("/dev/sda1", "ext4", "/mnt", 10, None),
            mount("server:/x", "nfs4", "/net/x", 10, None),
            mount("server:/x", "nfs4", "/net/y", 10, None),
        ];
        // a network source is not a block device: two exports may differ
        assert_eq!(
            points(&select_mounts(&all, &MountSelection::All)),
            ["/mnt", "/net/x", "/net/y"]
        );
    }

    #[test]
    fn only_listed_mounts_in_order_pseudo_allowed_missing_unknown() {
        let sel = MountSelection::Only(vec![
            "/data".into(),
            "/dev/shm".into(),
            "/nope".into(),
            "/etc/hosts".into(),
            "/".into(),
        ]);
        let kept = select_mounts(&container_mounts(), &sel);
        // "/" is the same filesystem as /etc/hosts, listed earlier
        assert_eq!(points(&kept), ["/data", "/dev/shm", "/nope", "/etc/hosts"]);
        assert_eq!((kept[2].total_bytes, kept[2].available_bytes), (None, None));
        assert_eq!(kept[0].total_bytes, Some(500));
    }

    #[test]
    fn pseudo_detection() {
        assert!(is_pseudo(&mount("x", "ext4", "/proc/fs/nfsd", 1, None)));
        assert!(is_pseudo(&mount("tmpfs", "tmpfs", "/run", 1, None)));
        assert!(!is_pseudo(&mount("/dev/vda", "ext4", "/", 1, None)));
        assert!(!is_pseudo(&mount("/dev/vdb", "ext4", "/devices", 1, None)));
    }
}
