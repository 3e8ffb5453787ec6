//! Energy from RAPL counters (/sys/class/powercap), for FAWN's metric:
//! operations per Joule. The counters cover the whole package (every
//! process on the machine, the load generator included) and are often
//! readable by root only; where they cannot be read the report says why.

use std::path::{Path, PathBuf};

const POWERCAP: &str = "/sys/class/powercap";

/// One top-level RAPL zone (a CPU package, or the platform).
#[derive(Debug, Clone)]
struct Zone {
    name: String,
    counter: PathBuf,
    /// The counter wraps to 0 after this many microjoules.
    range_uj: u64,
}

/// The readable RAPL zones of this machine.
#[derive(Debug, Clone)]
pub struct Rapl {
    zones: Vec<Zone>,
}

/// Counter values at one moment, one per zone.
#[derive(Debug, Clone)]
pub struct Reading(Vec<u64>);

impl Rapl {
    /// Opens the package zones under /sys/class/powercap; `Err` says why
    /// energy cannot be measured here.
    pub fn open() -> Result<Rapl, String> {
        Rapl::open_at(Path::new(POWERCAP))
    }

    fn open_at(root: &Path) -> Result<Rapl, String> {
        let entries = std::fs::read_dir(root).map_err(|e| format!("{}: {e}", root.display()))?;
        let mut zones = Vec::new();
        let mut first_error = None;
        for entry in entries.flatten() {
            let dir_name = entry.file_name().to_string_lossy().into_owned();
            // Top-level zones only ("intel-rapl:0", not "intel-rapl:0:1",
            // whose energy its parent already counts).
            if dir_name.matches(':').count() != 1 {
                continue;
            }
            let dir = entry.path();
            let name = std::fs::read_to_string(dir.join("name")).unwrap_or_default().trim().to_owned();
            // "psys" overlaps the packages; sum packages only.
            if !name.starts_with("package") {
                continue;
            }
            let counter = dir.join("energy_uj");
            let range = std::fs::read_to_string(dir.join("max_energy_range_uj"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(u64::MAX);
            match read_counter(&counter) {
                Ok(_) => zones.push(Zone { name, counter, range_uj: range }),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if zones.is_empty() {
            return Err(first_error.unwrap_or_else(|| format!("no RAPL package zones under {}", root.display())));
        }
        zones.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Rapl { zones })
    }

    pub fn zone_names(&self) -> Vec<String> {
        self.zones.iter().map(|z| z.name.clone()).collect()
    }

    pub fn read(&self) -> Result<Reading, String> {
        self.zones.iter().map(|z| read_counter(&z.counter)).collect::<Result<_, _>>().map(Reading)
    }

    /// Joules used between two readings, across one counter wrap per zone.
    pub fn joules(&self, before: &Reading, after: &Reading) -> f64 {
        self.zones
            .iter()
            .zip(before.0.iter().zip(&after.0))
            .map(|(z, (&b, &a))| if a >= b { a - b } else { z.range_uj - b + a } as f64 / 1e6)
            .sum()
    }
}

fn read_counter(path: &Path) -> Result<u64, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.trim().parse().map_err(|_| format!("{}: not a number: {text:?}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(root: &Path, dir: &str, name: &str, energy: u64, range: u64) {
        let d = root.join(dir);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("name"), format!("{name}\n")).unwrap();
        std::fs::write(d.join("energy_uj"), format!("{energy}\n")).unwrap();
        std::fs::write(d.join("max_energy_range_uj"), format!("{range}\n")).unwrap();
    }

    #[test]
    fn sums_package_zones_across_a_wrap() {
        let root = tempfile::tempdir().unwrap();
        zone(root.path(), "intel-rapl:0", "package-0", 1_000_000, 10_000_000);
        zone(root.path(), "intel-rapl:1", "package-1", 9_500_000, 10_000_000);
        zone(root.path(), "intel-rapl:0:0", "core", 5, 10_000_000);
        zone(root.path(), "intel-rapl:2", "psys", 5, 10_000_000);
        let rapl = Rapl::open_at(root.path()).unwrap();
        assert_eq!(rapl.zone_names(), ["package-0", "package-1"]);
        let before = rapl.read().unwrap();
        zone(root.path(), "intel-rapl:0", "package-0", 3_000_000, 10_000_000);
        zone(root.path(), "intel-rapl:1", "package-1", 500_000, 10_000_000);
        let after = rapl.read().unwrap();
        // 2 J on package 0; package 1 wrapped: 0.5 J to the top, 0.5 J after.
        assert!((rapl.joules(&before, &after) - 3.0).abs() < 1e-9);
    }

    #[test]
    fn says_why_when_there_is_nothing_to_read() {
        let root = tempfile::tempdir().unwrap();
        assert!(Rapl::open_at(root.path()).unwrap_err().contains("no RAPL package zones"));
        assert!(Rapl::open_at(&root.path().join("absent")).unwrap_err().contains("absent"));
    }
}
