//! What a benchmark client does: which operation next (a weighted mix), on
//! which record (a key distribution). YCSB's core workloads A–F, the Pi
//! project's GET/PUT/HASH/PICT mix, and compute-only runs are all a mix plus a
//! distribution.

use std::fmt;
use std::str::FromStr;

use rand::Rng;

/// One kind of operation a client sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OpKind {
    /// YCSB read: get one record.
    Read,
    /// YCSB update: overwrite one record.
    Update,
    /// YCSB insert: a new record after the last.
    Insert,
    /// YCSB scan: records `id..id+len`. The store hashes keys and keeps no
    /// order, so a scan is `len` point reads sent at once.
    Scan,
    /// YCSB read-modify-write: get a record, then write it back changed.
    ReadModifyWrite,
    /// Pi mix: get a record.
    Get,
    /// Pi mix: put a record.
    Put,
    /// Pi mix: BLAKE3 of a record, computed on the worker that holds it.
    Hash,
    /// Pi mix: an image pipeline over a stored picture, on its worker.
    Pict,
    /// Compute-only: the named pipeline over a stored picture.
    Compute,
}

impl OpKind {
    pub const ALL: [OpKind; 10] = [
        OpKind::Read,
        OpKind::Update,
        OpKind::Insert,
        OpKind::Scan,
        OpKind::ReadModifyWrite,
        OpKind::Get,
        OpKind::Put,
        OpKind::Hash,
        OpKind::Pict,
        OpKind::Compute,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OpKind::Read => "read",
            OpKind::Update => "update",
            OpKind::Insert => "insert",
            OpKind::Scan => "scan",
            OpKind::ReadModifyWrite => "rmw",
            OpKind::Get => "get",
            OpKind::Put => "put",
            OpKind::Hash => "hash",
            OpKind::Pict => "pict",
            OpKind::Compute => "compute",
        }
    }

    /// Whether the operation needs the stored pictures.
    pub fn needs_pictures(self) -> bool {
        matches!(self, OpKind::Pict | OpKind::Compute)
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for OpKind {
    type Err = String;
    fn from_str(s: &str) -> Result<OpKind, String> {
        OpKind::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            let names: Vec<_> = OpKind::ALL.iter().map(|k| k.name()).collect();
            format!("unknown operation {s:?}; known: {}", names.join(", "))
        })
    }
}

/// Operations with integer weights, drawn in proportion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mix {
    parts: Vec<(OpKind, u32)>,
    total: u32,
}

impl Mix {
    pub fn new(parts: Vec<(OpKind, u32)>) -> Result<Mix, String> {
        let parts: Vec<_> = parts.into_iter().filter(|&(_, w)| w > 0).collect();
        for (i, (k, _)) in parts.iter().enumerate() {
            if parts[..i].iter().any(|(o, _)| o == k) {
                return Err(format!("{k} appears twice in the mix"));
            }
        }
        let total = parts.iter().try_fold(0u32, |t, &(_, w)| t.checked_add(w)).ok_or("mix weights overflow")?;
        if total == 0 {
            return Err("the mix has no operation with a weight above 0".into());
        }
        Ok(Mix { parts, total })
    }

    /// Parses `get=50,put=20,hash=20,pict=10`.
    pub fn parse(s: &str) -> Result<Mix, String> {
        let parts = s
            .split(',')
            .map(|part| {
                let (name, weight) =
                    part.split_once('=').ok_or_else(|| format!("{part:?}: write OPERATION=WEIGHT, e.g. get=50"))?;
                let weight: u32 = weight.trim().parse().map_err(|_| format!("{part:?}: the weight is not a number"))?;
                Ok((name.trim().parse()?, weight))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Mix::new(parts)
    }

    pub fn parts(&self) -> &[(OpKind, u32)] {
        &self.parts
    }

    /// The share of `kind` in the mix, 0 to 1.
    pub fn share(&self, kind: OpKind) -> f64 {
        self.parts.iter().find(|(k, _)| *k == kind).map_or(0.0, |&(_, w)| f64::from(w) / f64::from(self.total))
    }

    #[cfg(test)]
    pub fn contains(&self, kind: OpKind) -> bool {
        self.parts.iter().any(|(k, _)| *k == kind)
    }

    pub fn pick(&self, rng: &mut impl Rng) -> OpKind {
        let mut x = rng.random_range(0..self.total);
        for &(k, w) in &self.parts {
            if x < w {
                return k;
            }
            x -= w;
        }
        unreachable!("weights sum to total")
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, w)) in self.parts.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}={w}")?;
        }
        Ok(())
    }
}

/// Which records the operations touch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Distribution {
    /// Every record equally likely.
    Uniform,
    /// YCSB's scrambled Zipfian, constant 0.99: a few records are hot, and
    /// where they lie in the key space is scattered.
    Zipfian,
    /// YCSB's "latest": Zipfian over recency, the newest records hottest.
    Latest,
}

impl Distribution {
    pub fn name(self) -> &'static str {
        match self {
            Distribution::Uniform => "uniform",
            Distribution::Zipfian => "zipfian",
            Distribution::Latest => "latest",
        }
    }
}

impl FromStr for Distribution {
    type Err = String;
    fn from_str(s: &str) -> Result<Distribution, String> {
        match s {
            "uniform" => Ok(Distribution::Uniform),
            "zipfian" => Ok(Distribution::Zipfian),
            "latest" => Ok(Distribution::Latest),
            _ => Err(format!("unknown distribution {s:?}; known: uniform, zipfian, latest")),
        }
    }
}

/// YCSB's Zipfian constant.
pub const ZIPFIAN_CONSTANT: f64 = 0.99;

/// Zipfian ranks over `0..n` (rank 0 the most popular), by the method of Gray
/// et al., "Quickly generating billion-record synthetic databases" (SIGMOD
/// '94), as YCSB draws them. `n` may grow (inserts): zeta(n) is extended
/// term by term rather than recomputed.
#[derive(Clone, Debug)]
pub struct Zipfian {
    theta: f64,
    alpha: f64,
    zeta2: f64,
    n: u64,
    zeta_n: f64,
    eta: f64,
}

impl Zipfian {
    pub fn new(n: u64, theta: f64) -> Zipfian {
        assert!(n >= 1, "a Zipfian needs at least one item");
        assert!(theta > 0.0 && theta < 1.0, "this method needs 0 < theta < 1");
        let mut z =
            Zipfian { theta, alpha: 1.0 / (1.0 - theta), zeta2: zeta(0, 2, theta, 0.0), n: 0, zeta_n: 0.0, eta: 0.0 };
        z.grow_to(n);
        z
    }

    /// A Zipfian over `n` items whose zeta(n) is known (too many items to
    /// sum, as YCSB's 10^10).
    fn with_zeta(n: u64, theta: f64, zeta_n: f64) -> Zipfian {
        let mut z = Zipfian::new(2, theta);
        z.n = n;
        z.zeta_n = zeta_n;
        z.eta = (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - z.zeta2 / zeta_n);
        z
    }

    /// Extends the item count to `n` (never shrinks).
    pub fn grow_to(&mut self, n: u64) {
        if n <= self.n {
            return;
        }
        self.zeta_n = zeta(self.n, n, self.theta, self.zeta_n);
        self.n = n;
        self.eta = (1.0 - (2.0 / n as f64).powf(1.0 - self.theta)) / (1.0 - self.zeta2 / self.zeta_n);
    }

    /// A rank in `0..n`.
    pub fn sample(&self, rng: &mut impl Rng) -> u64 {
        let u: f64 = rng.random();
        let uz = u * self.zeta_n;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1.min(self.n - 1);
        }
        let rank = (self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        rank.min(self.n - 1)
    }

    /// The probability of rank `r`.
    #[cfg(test)]
    pub fn probability(&self, r: u64) -> f64 {
        1.0 / ((r + 1) as f64).powf(self.theta) / self.zeta_n
    }
}

/// `partial` (the sum of terms `1..=from`) extended to the sum of
/// `1 / i^theta` for `i` in `1..=to`.
fn zeta(from: u64, to: u64, theta: f64, partial: f64) -> f64 {
    (from + 1..=to).fold(partial, |s, i| s + 1.0 / (i as f64).powf(theta))
}

/// YCSB's scrambled Zipfian draws ranks over this many items, whatever the
/// record count, and folds them onto the records by hash.
const SCRAMBLED_ITEMS: u64 = 10_000_000_000;

/// zeta(10^10) for constant 0.99, as YCSB precomputes it.
const SCRAMBLED_ZETA: f64 = 26.469_028_201_783_02;

/// Spreads a Zipfian rank over `n` records, so the hot records are not the
/// first ones loaded: FNV-1a of the rank's bytes, sign dropped, modulo n
/// (YCSB's `fnvhash64`).
fn scramble(rank: u64, n: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in rank.to_le_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h as i64).unsigned_abs() % n
}

/// Draws record numbers from a distribution over the records that exist.
#[derive(Clone, Debug)]
pub struct KeyChooser {
    distribution: Distribution,
    zipfian: Option<Zipfian>,
}

impl KeyChooser {
    /// A chooser over `records` records (more may be inserted later).
    pub fn new(distribution: Distribution, records: u64) -> KeyChooser {
        let zipfian = match distribution {
            Distribution::Uniform => None,
            Distribution::Zipfian => Some(Zipfian::with_zeta(SCRAMBLED_ITEMS, ZIPFIAN_CONSTANT, SCRAMBLED_ZETA)),
            Distribution::Latest => Some(Zipfian::new(records.max(1), ZIPFIAN_CONSTANT)),
        };
        KeyChooser { distribution, zipfian }
    }

    /// A record number in `0..records`, where `records` is how many exist now.
    pub fn next(&mut self, rng: &mut impl Rng, records: u64) -> u64 {
        let records = records.max(1);
        match self.distribution {
            Distribution::Uniform => rng.random_range(0..records),
            Distribution::Zipfian => {
                // Over every record that exists now, inserted ones too.
                let z = self.zipfian.as_ref().expect("built with one");
                scramble(z.sample(rng), records)
            }
            Distribution::Latest => {
                let z = self.zipfian.as_mut().expect("built with one");
                z.grow_to(records);
                records - 1 - z.sample(rng).min(records - 1)
            }
        }
    }
}

/// The key of record `id` (YCSB's naming).
pub fn record_key(id: u64) -> String {
    format!("user{id}")
}

/// The key of stored picture `i`.
pub fn picture_key(i: u64) -> String {
    format!("picture{i}")
}

/// A named workload: the mix and the distribution it uses unless told
/// otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preset {
    pub name: String,
    pub mix: Mix,
    pub distribution: Distribution,
}

impl Preset {
    /// YCSB core workloads A–F, as YCSB's workload files define them.
    pub fn ycsb(letter: char) -> Option<Preset> {
        use OpKind::*;
        let (parts, distribution) = match letter.to_ascii_lowercase() {
            // Update heavy: a session store recording recent actions.
            'a' => (vec![(Read, 50), (Update, 50)], Distribution::Zipfian),
            // Read mostly: photo tagging.
            'b' => (vec![(Read, 95), (Update, 5)], Distribution::Zipfian),
            // Read only: a profile cache.
            'c' => (vec![(Read, 100)], Distribution::Zipfian),
            // Read latest: status updates.
            'd' => (vec![(Read, 95), (Insert, 5)], Distribution::Latest),
            // Short ranges: threaded conversations.
            'e' => (vec![(Scan, 95), (Insert, 5)], Distribution::Zipfian),
            // Read-modify-write: a user database.
            'f' => (vec![(Read, 50), (ReadModifyWrite, 50)], Distribution::Zipfian),
            _ => return None,
        };
        Some(Preset {
            name: format!("ycsb-{}", letter.to_ascii_lowercase()),
            mix: Mix::new(parts).expect("valid preset"),
            distribution,
        })
    }

    /// The Pi project's random task mix, uniform over the records.
    pub fn pi_mix(mix: Mix) -> Preset {
        Preset { name: "mix".into(), mix, distribution: Distribution::Uniform }
    }

    /// Compute jobs only, uniform over the stored pictures.
    pub fn compute() -> Preset {
        Preset {
            name: "compute".into(),
            mix: Mix::new(vec![(OpKind::Compute, 1)]).expect("valid preset"),
            distribution: Distribution::Uniform,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    fn rng() -> SmallRng {
        SmallRng::seed_from_u64(7)
    }

    #[test]
    fn mix_ratios_hold_over_many_draws() {
        let mix = Mix::parse("get=50,put=20,hash=20,pict=10").unwrap();
        let mut r = rng();
        let n = 200_000;
        let mut counts = std::collections::BTreeMap::new();
        for _ in 0..n {
            *counts.entry(mix.pick(&mut r)).or_insert(0u32) += 1;
        }
        for (kind, want) in [(OpKind::Get, 0.5), (OpKind::Put, 0.2), (OpKind::Hash, 0.2), (OpKind::Pict, 0.1)] {
            let got = f64::from(counts[&kind]) / f64::from(n);
            assert!((got - want).abs() < 0.005, "{kind}: {got} of draws, want {want}");
        }
        assert_eq!(counts.len(), 4);
    }

    #[test]
    fn mixes_parse_and_refuse_nonsense() {
        assert_eq!(Mix::parse("read=1,update=3").unwrap().to_string(), "read=1,update=3");
        assert!((Mix::parse("get=3,put=1").unwrap().share(OpKind::Put) - 0.25).abs() < 1e-12);
        assert!(Mix::parse("get=0").unwrap_err().contains("no operation"));
        assert!(Mix::parse("get").unwrap_err().contains("OPERATION=WEIGHT"));
        assert!(Mix::parse("get=x").unwrap_err().contains("not a number"));
        assert!(Mix::parse("teleport=3").unwrap_err().contains("unknown operation"));
        assert!(Mix::parse("get=1,get=2").unwrap_err().contains("twice"));
        // A zero weight drops the operation.
        assert!(!Mix::parse("get=1,put=0").unwrap().contains(OpKind::Put));
    }

    #[test]
    fn ycsb_presets_match_the_core_workloads() {
        let a = Preset::ycsb('A').unwrap();
        assert_eq!((a.name.as_str(), a.mix.to_string().as_str()), ("ycsb-a", "read=50,update=50"));
        assert_eq!(Preset::ycsb('d').unwrap().distribution, Distribution::Latest);
        assert_eq!(Preset::ycsb('e').unwrap().mix.to_string(), "scan=95,insert=5");
        assert_eq!(Preset::ycsb('f').unwrap().mix.to_string(), "read=50,rmw=50");
        assert!(Preset::ycsb('g').is_none());
    }

    #[test]
    fn zipfian_ranks_follow_the_power_law() {
        let n = 1000;
        let z = Zipfian::new(n, ZIPFIAN_CONSTANT);
        let mut r = rng();
        let draws = 400_000;
        let mut counts = vec![0u32; n as usize];
        for _ in 0..draws {
            counts[z.sample(&mut r) as usize] += 1;
        }
        // Ranks 0 and 1 are drawn exactly; the rest by a continuous
        // approximation that is close over ranges (and off by up to ~20% on
        // single early ranks, as in YCSB).
        for rank in [0u64, 1] {
            let want = z.probability(rank);
            let got = f64::from(counts[rank as usize]) / f64::from(draws);
            assert!((got - want).abs() / want < 0.03, "rank {rank}: {got:.5} drawn, {want:.5} expected");
        }
        for (lo, hi) in [(0u64, 10u64), (10, 100), (100, 1000)] {
            let want: f64 = (lo..hi).map(|r| z.probability(r)).sum();
            let got = f64::from(counts[lo as usize..hi as usize].iter().sum::<u32>()) / f64::from(draws);
            assert!((got - want).abs() / want < 0.05, "ranks {lo}..{hi}: {got:.4} drawn, {want:.4} expected");
        }
        // Skew: the top 1% of ranks take far more than 1% of draws (about
        // 44% for theta 0.99 over 1000 items), and rank 0 beats rank 100.
        let top: u32 = counts[..10].iter().sum();
        let share = f64::from(top) / f64::from(draws);
        assert!((0.38..0.50).contains(&share), "top 1% drew {share}");
        assert!(counts[0] > 20 * counts[100].max(1));
        assert!(counts.iter().all(|&c| c < draws), "every rank in range");
    }

    #[test]
    fn zipfian_grows_like_one_built_at_the_larger_size() {
        let mut grown = Zipfian::new(10, ZIPFIAN_CONSTANT);
        grown.grow_to(5000);
        let built = Zipfian::new(5000, ZIPFIAN_CONSTANT);
        assert!((grown.zeta_n - built.zeta_n).abs() < 1e-9);
        assert!((grown.eta - built.eta).abs() < 1e-12);
    }

    #[test]
    fn uniform_keys_cover_the_records_evenly() {
        let mut c = KeyChooser::new(Distribution::Uniform, 100);
        let mut r = rng();
        let mut counts = [0u32; 100];
        for _ in 0..200_000 {
            counts[c.next(&mut r, 100) as usize] += 1;
        }
        // Each record expects 2000 draws; 5 standard deviations is ~220.
        assert!(counts.iter().all(|&n| (1780..2220).contains(&n)), "{counts:?}");
    }

    #[test]
    fn zipfian_keys_are_hot_but_scattered() {
        let n = 10_000;
        let mut c = KeyChooser::new(Distribution::Zipfian, n);
        let mut r = rng();
        let mut counts = vec![0u32; n as usize];
        for _ in 0..200_000 {
            counts[c.next(&mut r, n) as usize] += 1;
        }
        let hottest = counts.iter().enumerate().max_by_key(|(_, c)| **c).unwrap().0 as u64;
        assert_eq!(hottest, scramble(0, n), "rank 0 lands where the scramble puts it");
        // Rank 0 alone takes 1/zeta(10^10) = 3.8% of draws (plus the ranks
        // that hash onto the same record).
        let share = f64::from(counts[hottest as usize]) / 200_000.0;
        assert!((0.037..0.045).contains(&share), "hottest record drew {share}");
        let mut sorted = counts.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        let top: u32 = sorted[..100].iter().sum();
        // About 22% of draws, against 1% were the keys uniform.
        assert!(f64::from(top) / 200_000.0 > 0.15, "the top 1% of records are hot: {top}");
        // The hot records are spread over the key space, not the first ones.
        let first_tenth: u32 = counts[..(n / 10) as usize].iter().sum();
        assert!(f64::from(first_tenth) / 200_000.0 < 0.3);
    }

    #[test]
    fn latest_prefers_the_newest_records_as_they_are_inserted() {
        let mut c = KeyChooser::new(Distribution::Latest, 1000);
        let mut r = rng();
        let draws = 100_000;
        let newest = (0..draws).filter(|_| c.next(&mut r, 1000) == 999).count();
        assert!(newest as f64 / draws as f64 > 0.1, "the newest record is the hottest: {newest}");
        // After inserts the hot spot moves to the new end.
        let recent = (0..draws).filter(|_| c.next(&mut r, 2000) >= 1990).count();
        assert!(recent as f64 / draws as f64 > 0.25, "{recent}");
        assert!((0..draws).all(|_| c.next(&mut r, 2000) < 2000));
    }
}
