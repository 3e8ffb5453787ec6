//! The master's durable state: its [`Snapshot`] in `<data>/state`, written
//! whole on every change: to `state.tmp`, fsynced, renamed over `state`,
//! and the directory fsynced, so a crash leaves the old state or the new,
//! never half of one.
//!
//! The file is text, one record per line, so an operator can read it:
//!
//! ```text
//! wimpy-master-state 1
//! epoch 7
//! vnodes 256
//! replicas 3
//! next-id 4
//! member 1 serving 127.0.0.1:34567 pi-1
//! member 3 down 127.0.0.1:40001 pi-3
//! member 5 failed 127.0.0.1:40002
//! departed 2
//! join-token 9b71d224bd62f3785d96d46ad3ea3d73319bfbc2890caadae2dff72519673ca7 1767225600
//! change join 3
//! ```
//!
//! `replicas` is the copies of each key the rings keep; a state without
//! the line (from a master before chain replication) keeps one.
//!
//! A `join-token` line is an unspent join token: the SHA-256 of its
//! secret, and when it expires (Unix seconds).
//!
//! A member line ends with the name on the certificate the worker
//! registered with (none when the cluster runs `--insecure`): only that
//! certificate speaks for the member afterwards, across restarts too.
//!
//! A master of an earlier version kept only the last epoch in `<data>/epoch`;
//! that file is read when there is no `state`, and the epochs go on from it.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::membership::{Change, MemberState, Snapshot};

const STATE: &str = "state";
const STATE_TMP: &str = "state.tmp";
/// What earlier versions kept: the last epoch alone.
const EPOCH_FILE: &str = "epoch";
const HEADER: &str = "wimpy-master-state 1";

/// Where the master keeps its state, and what it last wrote there.
#[derive(Debug)]
pub struct StateFile {
    dir: PathBuf,
    /// The snapshot on disk, so that an unchanged one is not written again.
    saved: std::cell::RefCell<Option<Snapshot>>,
}

/// What opening a data directory found.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// No state: a new cluster.
    Nothing,
    /// An earlier version's epoch file: go on after that epoch.
    Epoch(u64),
    /// The state of the master's last run.
    State(Snapshot),
}

impl StateFile {
    /// Opens the state in `dir` and reads what it holds. A state file that
    /// does not read is an error: starting empty would lose the cluster.
    pub fn open(dir: &Path) -> std::io::Result<(StateFile, Found)> {
        let file = StateFile { dir: dir.to_owned(), saved: Default::default() };
        let found = match std::fs::read_to_string(dir.join(STATE)) {
            Ok(text) => {
                let snapshot = parse(&text).map_err(|e| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "{}: {e}; the master will not start on a state it cannot read",
                            dir.join(STATE).display()
                        ),
                    )
                })?;
                *file.saved.borrow_mut() = Some(snapshot.clone());
                Found::State(snapshot)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match std::fs::read_to_string(dir.join(EPOCH_FILE)) {
                Ok(s) => Found::Epoch(s.trim().parse().map_err(|e| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{}: {e}", dir.join(EPOCH_FILE).display()),
                    )
                })?),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Found::Nothing,
                Err(e) => return Err(e),
            },
            Err(e) => return Err(e),
        };
        Ok((file, found))
    }

    /// Writes `snapshot` durably, unless it is what is on disk already.
    pub fn save(&self, snapshot: &Snapshot) -> std::io::Result<()> {
        if self.saved.borrow().as_ref() == Some(snapshot) {
            return Ok(());
        }
        let tmp = self.dir.join(STATE_TMP);
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(render(snapshot).as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, self.dir.join(STATE))?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        *self.saved.borrow_mut() = Some(snapshot.clone());
        Ok(())
    }
}

fn render(s: &Snapshot) -> String {
    let mut out =
        format!("{HEADER}\nepoch {}\nvnodes {}\nreplicas {}\nnext-id {}\n", s.epoch, s.vnodes, s.replicas, s.next_id);
    for (id, address, state, holder) in &s.members {
        out += &format!("member {id} {state} {address}");
        if let Some(holder) = holder {
            out += &format!(" {holder}");
        }
        out.push('\n');
    }
    for id in &s.departed {
        out += &format!("departed {id}\n");
    }
    for (hash, expires) in &s.join_tokens {
        out += &format!("join-token {} {expires}\n", wimpy_net::security::hex(hash));
    }
    match s.change {
        Some(Change::Join(id)) => out += &format!("change join {id}\n"),
        Some(Change::Leave(id)) => out += &format!("change leave {id}\n"),
        None => {}
    }
    out
}

fn parse(text: &str) -> Result<Snapshot, String> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, HEADER)) => {}
        other => return Err(format!("the first line is {:?}, not {HEADER:?}", other.map(|(_, l)| l))),
    }
    let mut s = Snapshot {
        epoch: 0,
        vnodes: 0,
        replicas: 1,
        next_id: 1,
        members: Vec::new(),
        departed: Vec::new(),
        join_tokens: Vec::new(),
        change: None,
    };
    for (n, line) in lines {
        let bad = |what: &str| format!("line {}: {what}: {line:?}", n + 1);
        let number = |w: Option<&str>| w.and_then(|w| w.parse::<u64>().ok()).ok_or_else(|| bad("a number"));
        let mut words = line.split_whitespace();
        match words.next() {
            Some("epoch") => s.epoch = number(words.next())?,
            Some("vnodes") => s.vnodes = u32::try_from(number(words.next())?).map_err(|_| bad("vnodes"))?,
            Some("replicas") => {
                s.replicas =
                    u32::try_from(number(words.next())?).ok().filter(|&r| r > 0).ok_or_else(|| bad("replicas"))?
            }
            Some("next-id") => s.next_id = number(words.next())?,
            Some("member") => {
                let id = number(words.next())?;
                let state = match words.next() {
                    Some("joining") => MemberState::Joining,
                    Some("serving") => MemberState::Serving,
                    Some("leaving") => MemberState::Leaving,
                    Some("down") => MemberState::Down,
                    Some("failed") => MemberState::Failed,
                    Some("returning") => MemberState::Returning,
                    _ => return Err(bad("a member state")),
                };
                let address = words.next().ok_or_else(|| bad("an address"))?.to_owned();
                let holder = words.next().map(str::to_owned);
                s.members.push((id, address, state, holder));
            }
            Some("departed") => s.departed.push(number(words.next())?),
            Some("join-token") => {
                let hash = words.next().and_then(wimpy_net::security::unhex).ok_or_else(|| bad("a token hash"))?;
                s.join_tokens.push((hash, number(words.next())?));
            }
            Some("change") => {
                s.change = Some(match (words.next(), number(words.next())?) {
                    (Some("join"), id) => Change::Join(id),
                    (Some("leave"), id) => Change::Leave(id),
                    _ => return Err(bad("a change")),
                })
            }
            None => {}
            Some(_) => return Err(bad("an unknown record")),
        }
    }
    if s.vnodes == 0 {
        return Err("no vnodes line".into());
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        Snapshot {
            epoch: 7,
            vnodes: 256,
            replicas: 3,
            next_id: 6,
            members: vec![
                (1, "127.0.0.1:7001".into(), MemberState::Serving, Some("pi-1".into())),
                (3, "127.0.0.1:7003".into(), MemberState::Down, Some("pi-3".into())),
                (4, "127.0.0.1:7004".into(), MemberState::Joining, None),
                (5, "127.0.0.1:7005".into(), MemberState::Failed, Some("pi-5".into())),
            ],
            departed: vec![2],
            join_tokens: vec![([0xab; 32], 1_900_000_000)],
            change: Some(Change::Join(4)),
        }
    }

    #[test]
    fn a_state_written_reads_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let (file, found) = StateFile::open(dir.path()).unwrap();
        assert_eq!(found, Found::Nothing);
        file.save(&sample()).unwrap();
        assert!(!dir.path().join(STATE_TMP).exists());
        let (_, found) = StateFile::open(dir.path()).unwrap();
        assert_eq!(found, Found::State(sample()));
    }

    #[test]
    fn an_earlier_versions_epoch_is_picked_up_and_a_damaged_state_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(EPOCH_FILE), "12\n").unwrap();
        assert_eq!(StateFile::open(dir.path()).unwrap().1, Found::Epoch(12));
        std::fs::write(dir.path().join(STATE), "wimpy-master-state 1\nepoch x\n").unwrap();
        let err = StateFile::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("will not start"), "{err}");
        std::fs::write(dir.path().join(STATE), render(&sample()).replace("serving", "dancing")).unwrap();
        assert!(StateFile::open(dir.path()).is_err());
        std::fs::write(dir.path().join(STATE), render(&sample()).replace("replicas 3", "replicas 0")).unwrap();
        assert!(StateFile::open(dir.path()).is_err(), "no copies is no state");
    }

    #[test]
    fn a_state_from_before_chains_keeps_one_copy() {
        let text = render(&sample()).replace("replicas 3\n", "");
        assert!(!text.contains("replicas"));
        let s = parse(&text).unwrap();
        assert_eq!(s.replicas, 1);
        assert_eq!(Snapshot { replicas: 3, ..s }, sample());
    }
}
