//! An emulated fleet on one machine (`--emulate CPU[,LATENCY]`): each node
//! of a local cluster on a loopback address of its own, its CPU capped by a
//! cgroup quota, and a delay on everything it receives.
//!
//! Nothing here leaves 127.0.0.0/8. Caps need the cgroup CPU controller
//! writable (root, in practice): without it the nodes run uncapped, and
//! the cluster says so when it starts.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// What `--emulate` asks for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Emulation {
    /// The share of one core each node may use (0.25: a quarter).
    pub cpu: f64,
    /// The delay on everything each node receives; zero for none.
    pub latency: Duration,
}

impl Emulation {
    /// Parses `CPU[,LATENCY]`: `0.25`, `0.5,2ms`.
    pub fn parse(s: &str) -> Result<Emulation, String> {
        let (cpu, latency) = s.split_once(',').unwrap_or((s, "0"));
        let cpu = match cpu.trim().parse::<f64>() {
            Ok(c) if c.is_finite() && c > 0.0 && c <= 64.0 => c,
            _ => return Err(format!("{s:?}: the CPU share is a number above 0 (0.25 is a quarter of a core)")),
        };
        let latency = wimpy_net::flags::span(latency.trim()).map_err(|e| format!("{s:?}: the latency: {e}"))?;
        Ok(Emulation { cpu, latency })
    }

    /// The loopback address of worker `i` (the master keeps its own).
    pub fn worker_ip(i: usize) -> std::net::Ipv4Addr {
        let n = i + 2;
        std::net::Ipv4Addr::new(127, 0, (n >> 8) as u8, (n & 0xff) as u8)
    }
}

impl std::fmt::Display for Emulation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} of a core per node", self.cpu)?;
        if !self.latency.is_zero() {
            write!(f, ", {:?} on everything a node receives", self.latency)?;
        }
        Ok(())
    }
}

/// The cgroups capping one cluster's nodes, removed when dropped.
#[derive(Debug)]
pub struct CpuCaps {
    /// The cluster's own group, holding one group per node.
    root: PathBuf,
    version: CgroupVersion,
    quota_us: u64,
    period_us: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CgroupVersion {
    V1,
    V2,
}

/// The CFS period of a cap, at least: short, so that a capped node runs
/// a little of every few milliseconds, as a slow core does, rather than
/// all of its share at once and then nothing for most of 100 ms (the
/// kernel's default), which would hold every request to it that long.
const PERIOD_US: u64 = 10_000;
/// The smallest quota the kernel takes.
const MIN_QUOTA_US: u64 = 1_000;

impl CpuCaps {
    /// A group for this cluster's nodes, each to get `cpu` of a core; the
    /// reason why not if the CPU controller cannot be written here.
    pub fn new(cpu: f64) -> Result<CpuCaps, String> {
        let base = Path::new("/sys/fs/cgroup");
        let (version, parent) = if base.join("cgroup.controllers").exists() {
            (CgroupVersion::V2, base.to_path_buf())
        } else if base.join("cpu/cpu.cfs_quota_us").exists() {
            (CgroupVersion::V1, base.join("cpu"))
        } else {
            return Err("no cgroup CPU controller at /sys/fs/cgroup".into());
        };
        remove_stale_groups(&parent);
        let root = parent.join(format!("wimpy-local-{}", std::process::id()));
        if version == CgroupVersion::V2 {
            // The controller must be on for the groups below the root's.
            let _ = std::fs::write(parent.join("cgroup.subtree_control"), "+cpu");
        }
        std::fs::create_dir_all(&root).map_err(|e| format!("making {}: {e}", root.display()))?;
        if version == CgroupVersion::V2 {
            std::fs::write(root.join("cgroup.subtree_control"), "+cpu")
                .map_err(|e| format!("turning on the CPU controller in {}: {e}", root.display()))?;
        }
        // A share too small for the shortest period gets a longer one.
        let period_us = PERIOD_US.max((MIN_QUOTA_US as f64 / cpu).ceil() as u64);
        let quota_us = (cpu * period_us as f64) as u64;
        Ok(CpuCaps { root, version, quota_us, period_us })
    }

    /// Caps the process `pid` (the node `name`) in a group of its own.
    pub fn cap(&self, name: &str, pid: u32) -> Result<(), String> {
        let group = self.root.join(name);
        let write = |file: &str, what: String| {
            std::fs::write(group.join(file), &what).map_err(|e| format!("{}/{file}: {e}", group.display()))
        };
        std::fs::create_dir_all(&group).map_err(|e| format!("making {}: {e}", group.display()))?;
        match self.version {
            CgroupVersion::V1 => {
                write("cpu.cfs_period_us", self.period_us.to_string())?;
                write("cpu.cfs_quota_us", self.quota_us.to_string())?;
            }
            CgroupVersion::V2 => write("cpu.max", format!("{} {}", self.quota_us, self.period_us))?,
        }
        write("cgroup.procs", pid.to_string())
    }
}

/// Removes `root` and the groups in it, if they hold no process (one that
/// does is not removed).
fn remove_group(root: &Path) {
    if let Ok(groups) = std::fs::read_dir(root) {
        for g in groups.flatten() {
            if g.path().is_dir() {
                let _ = std::fs::remove_dir(g.path());
            }
        }
    }
    let _ = std::fs::remove_dir(root);
}

/// Removes the groups of local clusters whose process is gone (killed
/// before it could remove them).
fn remove_stale_groups(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("wimpy-local-")) else { continue };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            remove_group(&e.path());
        }
    }
}

impl Drop for CpuCaps {
    fn drop(&mut self) {
        // Empty by now: the nodes have exited.
        remove_group(&self.root);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emulation_is_a_cpu_share_and_a_latency() {
        assert_eq!(Emulation::parse("0.25"), Ok(Emulation { cpu: 0.25, latency: Duration::ZERO }));
        assert_eq!(Emulation::parse("0.5,2ms"), Ok(Emulation { cpu: 0.5, latency: Duration::from_millis(2) }));
        for bad in ["", "0", "-1", "fast", "0.25,", "0.25,2"] {
            assert!(Emulation::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Emulation::worker_ip(0), std::net::Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(Emulation::worker_ip(300), std::net::Ipv4Addr::new(127, 0, 1, 46));
    }
}
