//! NVIDIA XID error codes and what they mean for a device.
//!
//! An XID is an error report that the NVIDIA driver writes to the kernel log and
//! delivers through NVML events. The classification follows NVIDIA's DCGM health
//! watches and the XID catalogue (docs.nvidia.com/deploy/xid-errors): some XIDs mean the
//! device is broken, some that it needs attention, and some that the *application*
//! running on it faulted (an illegal address, a kernel timeout): a task failure, not a
//! device failure.

use core::fmt;

/// What an XID says about a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum XidClass {
    /// The device is broken or unsafe to use until reset or repaired: XIDs 48, 64, 74,
    /// 79, 95, 119, 120, 140. Health: critical.
    DeviceCritical,
    /// The device needs attention (a reset or drain soon) but still works: XIDs 63, 94.
    /// Health: degraded.
    DeviceDegraded,
    /// The application running on the device faulted: XIDs 13, 31, 43, 45, 68, 109. The
    /// device is fine; the supervisor treats this as a failure of the task.
    ApplicationFault,
    /// Not in the table; judged unknown.
    Unknown,
}

impl XidClass {
    /// A short, stable, lower-case name (`"device_critical"`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::DeviceCritical => "device_critical",
            Self::DeviceDegraded => "device_degraded",
            Self::ApplicationFault => "application_fault",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for XidClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Classifies an XID code (see [`XidClass`] for the table and its source).
///
/// ```
/// use sturdy_core::health::{classify_xid, XidClass};
/// assert_eq!(classify_xid(79), XidClass::DeviceCritical); // fallen off the bus
/// assert_eq!(classify_xid(31), XidClass::ApplicationFault); // the app's page fault
/// assert_eq!(classify_xid(1), XidClass::Unknown);
/// ```
pub const fn classify_xid(xid: u32) -> XidClass {
    match xid {
        48 | 64 | 74 | 79 | 95 | 119 | 120 | 140 => XidClass::DeviceCritical,
        63 | 94 => XidClass::DeviceDegraded,
        13 | 31 | 43 | 45 | 68 | 109 => XidClass::ApplicationFault,
        _ => XidClass::Unknown,
    }
}

/// A short description of a classified XID, after NVIDIA's XID catalogue; `None` for
/// codes not in the table.
pub const fn xid_description(xid: u32) -> Option<&'static str> {
    Some(match xid {
        13 => "graphics engine exception",
        31 => "GPU memory page fault",
        43 => "GPU stopped processing",
        45 => "preemptive cleanup after a previous error",
        48 => "double-bit ECC error",
        63 => "ECC page retirement or row remapping event",
        64 => "ECC page retirement or row remapper recording failure",
        68 => "video processor exception",
        74 => "NVLink error",
        79 => "GPU has fallen off the bus",
        94 => "contained ECC error",
        95 => "uncontained ECC error",
        109 => "context switch timeout",
        119 => "GSP RPC timeout",
        120 => "GSP error",
        140 => "unrecovered ECC error",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dcgm_table() {
        for x in [48, 64, 74, 79, 95, 119, 120, 140] {
            assert_eq!(classify_xid(x), XidClass::DeviceCritical, "xid {x}");
        }
        for x in [63, 94] {
            assert_eq!(classify_xid(x), XidClass::DeviceDegraded, "xid {x}");
        }
        for x in [13, 31, 43, 45, 68, 109] {
            assert_eq!(classify_xid(x), XidClass::ApplicationFault, "xid {x}");
        }
        for x in [0, 1, 62, 65, 80, 141, u32::MAX] {
            assert_eq!(classify_xid(x), XidClass::Unknown, "xid {x}");
            assert_eq!(xid_description(x), None);
        }
        for x in [
            13, 31, 43, 45, 48, 63, 64, 68, 74, 79, 94, 95, 109, 119, 120, 140,
        ] {
            assert!(xid_description(x).is_some(), "xid {x}");
        }
        assert_eq!(xid_description(79), Some("GPU has fallen off the bus"));
    }
}
