//! The spool (DESIGN.md section 7, "Ingest"): while PostgreSQL is unreachable, the writer on
//! the worker's I/O thread appends each batch to a file in `database.spool_dir` as one record,
//! fsyncs once, and answers it, so that its held acknowledgements leave; the records are
//! replayed in order through the store once PostgreSQL is back.
//!
//! | file | what |
//! |---|---|
//! | `record.rs` | the format: header, length + CRC-32 framed records, torn tails |
//! | `file.rs` | one file under `flock`: made, claimed, appended and fsynced, read, removed |
//! | `mod.rs` | [`Spool`]: the files one writer holds (its own and the orphans it adopted) |
//! | `replay.rs` | the task that replays them, with back-off, exactly once |
//!
//! Ownership: every spool file is held under `flock(LOCK_EX)` by one writer for as long as it
//! exists; the lock goes with the process, so a file nobody holds is an orphan (its worker was
//! killed, or exited: a reload, a stop) and any writer takes it over: at start and on every
//! retry tick each writer scans the directory, locks what it can without waiting, and replays
//! the orphans, older first, before its own file. A file is unlinked while still locked once
//! replayed; a claimer that finds its path no longer names the inode it locked leaves it.
//!
//! Order: while any file a writer holds has records waiting, its new batches go to its own file
//! too, behind them, even when PostgreSQL is back; direct writes resume once all is replayed.
//! Exactly once: each record is applied in one transaction with the row of `spool_replay` that
//! says how far its file was replayed, so a crash, a kill or a broken connection during replay
//! applies no record twice, status messages (never duplicates, PROTOCOL.md) included.
//!
//! Everything here runs on the I/O thread (file I/O blocks it for an fsync, never an event
//! loop). [`Spool`] is shared by the writer's batches and the replay task through an
//! `Rc<RefCell<_>>` and never borrowed across an `.await`.

mod file;
pub mod record;
pub mod replay;

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::log;
use crate::modules::ingest::batch::Report;
use crate::modules::ingest::stats::Stats;
use file::{Record, SpoolFile};
use record::{Header, Tail};

/// A hidden file a writer died while making is removed once it is this old (younger ones may
/// still be in the making).
const STALE_AGE: Duration = Duration::from_secs(60);

/// The spool files one writer holds.
pub struct Spool {
    dir: PathBuf,
    /// This writer's file, made at its first append; replayed last.
    own: Option<SpoolFile>,
    /// Orphans taken over, oldest first.
    adopted: VecDeque<SpoolFile>,
    stats: Stats,
    /// Files this writer made (part of their names).
    made: u64,
    /// The last append failed: logged at crit once, until one succeeds.
    failing: bool,
    /// The last scan failed: logged once, until one succeeds.
    scan_failing: bool,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.dir)
            .field("own", &self.own)
            .field("adopted", &self.adopted)
            .finish()
    }
}

impl Spool {
    /// The spool of a writer in `dir`, holding nothing yet (no I/O: [`Spool::adopt`] scans).
    pub fn new(dir: PathBuf, stats: Stats) -> Spool {
        Spool {
            dir,
            own: None,
            adopted: VecDeque::new(),
            stats,
            made: 0,
            failing: false,
            scan_failing: false,
        }
    }

    /// Whether no file this writer holds has records waiting: batches may go to PostgreSQL.
    pub fn is_empty(&self) -> bool {
        self.adopted.is_empty() && self.own.as_ref().is_none_or(SpoolFile::drained)
    }

    /// Appends `reports` as one record to this writer's file, made if needed, and fsyncs it:
    /// `true` once they are durable. `false` (logged at crit once per failing spell): they are
    /// not, and their acknowledgements must wait.
    pub fn append(&mut self, reports: &[Report]) -> bool {
        let mut rec = Vec::new();
        record::encode(reports, &mut rec);
        let n = reports.len() as u64;
        let done = self.own_file().and_then(|f| f.append(&rec, n));
        match done {
            Ok(()) => {
                if self.failing {
                    log!(Notice, "ingest: the spool in {} works again", self.shown());
                }
                self.failing = false;
                self.gauges();
                true
            }
            Err(e) => {
                if !self.failing {
                    log!(
                        Crit,
                        "ingest: cannot spool {n} reports in {}: {e}; acknowledgements wait \
                         for PostgreSQL",
                        self.shown()
                    );
                }
                self.failing = true;
                false
            }
        }
    }

    /// This writer's file, made (with the directory) when it has none.
    fn own_file(&mut self) -> io::Result<&mut SpoolFile> {
        if self.own.is_none() {
            std::fs::create_dir_all(&self.dir)?;
            let created = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            let created_ns = i64::try_from(created.as_nanos()).unwrap_or(i64::MAX);
            self.made += 1;
            let pid = std::process::id();
            let name = format!("{created_ns}-{pid}-{}", self.made);
            let header = Header {
                id: file_id(&self.dir, &name),
                created_ns,
            };
            self.own = Some(SpoolFile::create(&self.dir, &name, header)?);
        }
        Ok(self.own.as_mut().expect("made just above"))
    }

    /// Takes over the orphans in the directory (files no live writer holds), older first.
    pub fn adopt(&mut self) {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) => {
                if !self.scan_failing {
                    log!(Error, "ingest: cannot read the spool {}: {e}", self.shown());
                }
                self.scan_failing = true;
                return;
            }
        };
        self.scan_failing = false;
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.ends_with(".new") {
                if let Err(e) = file::remove_stale(&path, STALE_AGE) {
                    log!(Warn, "ingest: cannot remove {}: {e}", path.display());
                }
            } else if name.ends_with(".spool") && !self.holds(&path) {
                found.extend(claim(&path));
            }
        }
        found.sort_by_key(|f| f.header.created_ns);
        for f in found {
            log!(
                Notice,
                "ingest: adopted the spool file {} ({} reports waiting)",
                f.path.display(),
                f.waiting().0
            );
            self.adopted.push_back(f);
        }
        self.gauges();
    }

    fn holds(&self, path: &Path) -> bool {
        self.own.iter().chain(&self.adopted).any(|f| f.path == path)
    }

    /// The file to replay from next: the oldest orphan, else this writer's own while it has
    /// records waiting.
    pub fn head(&self) -> Option<[u8; 16]> {
        match self.adopted.front() {
            Some(f) => Some(f.header.id),
            None => self
                .own
                .as_ref()
                .filter(|f| !f.drained())
                .map(|f| f.header.id),
        }
    }

    fn file(&self, id: &[u8; 16]) -> Option<&SpoolFile> {
        self.own
            .iter()
            .chain(&self.adopted)
            .find(|f| &f.header.id == id)
    }

    fn file_mut(&mut self, id: &[u8; 16]) -> Option<&mut SpoolFile> {
        self.own
            .iter_mut()
            .chain(&mut self.adopted)
            .find(|f| &f.header.id == id)
    }

    /// The next records of file `id` to replay, in order, as many as hold about `reports`
    /// reports (at least one record; none: none left, or the file is gone).
    fn read(&self, id: &[u8; 16], reports: usize) -> io::Result<Vec<Record>> {
        let Some(f) = self.file(id) else {
            return Ok(Vec::new());
        };
        let mut out: Vec<Record> = Vec::new();
        let mut n = 0;
        let mut at = f.next();
        while n < reports {
            match f.read_at(at)? {
                Some(r) => {
                    n += r.reports.len();
                    at = r.end;
                    out.push(r);
                }
                None => break,
            }
        }
        Ok(out)
    }

    /// File `id` is applied up to `end` (an earlier holder's progress, from PostgreSQL).
    fn skip_to(&mut self, id: &[u8; 16], end: u64) -> io::Result<()> {
        let skipped = match self.file_mut(id) {
            Some(f) => f.skip_to(end),
            None => Ok(()),
        };
        self.gauges();
        skipped
    }

    /// The record of file `id` ending at `end`, `reports` long, is applied.
    fn replayed(&mut self, id: &[u8; 16], end: u64, reports: u64) {
        if let Some(f) = self.file_mut(id) {
            f.replayed(end, reports);
        }
        self.gauges();
    }

    /// Removes file `id` if every record of it is applied: `Ok(Some(path))` when it is gone
    /// (its progress row may then be forgotten), `Ok(None)` when records wait (an append came).
    fn remove_if_drained(&mut self, id: &[u8; 16]) -> io::Result<Option<PathBuf>> {
        let f = if self.own.as_ref().is_some_and(|f| &f.header.id == id) {
            if !self.own.as_ref().is_some_and(SpoolFile::drained) {
                return Ok(None);
            }
            self.own.take()
        } else {
            match self.adopted.iter().position(|f| &f.header.id == id) {
                Some(i) if self.adopted[i].drained() => self.adopted.remove(i),
                Some(_) => return Ok(None),
                None => None,
            }
        };
        self.gauges();
        match f {
            Some(f) => {
                let path = f.path.clone();
                f.remove().map(|()| Some(path))
            }
            None => Ok(None),
        }
    }

    /// The spool depth gauges: reports and bytes waiting in every file held.
    fn gauges(&self) {
        let (reports, bytes) = self
            .own
            .iter()
            .chain(&self.adopted)
            .map(SpoolFile::waiting)
            .fold((0, 0), |a, w| (a.0 + w.0, a.1 + w.1));
        self.stats.spool(reports, bytes);
    }

    fn shown(&self) -> std::path::Display<'_> {
        self.dir.display()
    }
}

/// Claims the file at `path` if it is an orphan; logs what is wrong with it.
fn claim(path: &Path) -> Option<SpoolFile> {
    match SpoolFile::claim(path) {
        Ok(Some((f, tail))) => {
            match tail {
                Tail::Clean => {}
                Tail::Torn { bytes } => log!(
                    Warn,
                    "ingest: the spool file {} ends with {bytes} bytes of an append a crash cut \
                     short (never acknowledged): ignored",
                    path.display()
                ),
                Tail::Corrupt { bytes } => log!(
                    Crit,
                    "ingest: the spool file {} has {bytes} unreadable bytes after its last sound \
                     record: acknowledged reports may be lost; the file is kept as .damaged",
                    path.display()
                ),
            }
            Some(f)
        }
        Ok(None) => None,
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            let mut kept = path.as_os_str().to_owned();
            kept.push(".damaged");
            log!(
                Crit,
                "ingest: {} is not a spool file ({e}): renamed .damaged",
                path.display()
            );
            if let Err(e) = std::fs::rename(path, &kept) {
                log!(Crit, "ingest: cannot rename {}: {e}", path.display());
            }
            None
        }
        Err(e) => {
            log!(Error, "ingest: cannot claim {}: {e}", path.display());
            None
        }
    }
}

/// A file's identity in `spool_replay`: unique per machine, directory, process, file and time.
fn file_id(dir: &Path, name: &str) -> [u8; 16] {
    let host = nix::unistd::gethostname().unwrap_or_default();
    let mut h = Sha256::new();
    h.update(host.as_encoded_bytes());
    h.update([0]);
    h.update(dir.as_os_str().as_encoded_bytes());
    h.update([0]);
    h.update(name.as_bytes());
    h.finalize()[..16].try_into().expect("SHA-256 is 32 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::shm::Zone;
    use crate::modules::ingest::decode::decode;
    use crate::modules::ingest::stats;

    fn stats() -> (Zone, Stats) {
        let zone = Zone::new("ingest.stats", stats::zone_size()).expect("a zone");
        let s = Stats::new(zone.clone(), 3);
        (zone, s)
    }

    fn reports(n: usize) -> Vec<Report> {
        let raw = [0x01, 0x03, 0x20, 0x00, 0x67, 0x40, 0x9a, 0x00];
        let (_, payload) = decode("sensors/door-1/event", &raw).expect("a valid event");
        (0..n)
            .map(|i| Report {
                ticket: Some(i as u64),
                device_id: "door-1".into(),
                payload: payload.clone(),
                raw: raw.to_vec(),
                received_at: chrono::DateTime::from_timestamp_nanos(i as i64),
            })
            .collect()
    }

    #[test]
    fn records_are_read_whole_in_order_up_to_the_reports_asked_for() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (zone, st) = stats();
        let mut spool = Spool::new(dir.path().to_path_buf(), st);
        for n in [3, 2, 4, 1] {
            assert!(spool.append(&reports(n)));
        }
        let id = spool.head().expect("records wait");
        let first = spool.read(&id, 4).expect("read");
        let sizes: Vec<usize> = first.iter().map(|r| r.reports.len()).collect();
        assert_eq!(sizes, [3, 2], "whole records until 4 are reached");
        let end = first.last().expect("records").end;
        spool.replayed(&id, end, 5);
        assert_eq!(stats::totals(&zone).spool_reports, 5);
        let rest = spool.read(&id, 1000).expect("read");
        let sizes: Vec<usize> = rest.iter().map(|r| r.reports.len()).collect();
        assert_eq!(sizes, [4, 1]);
    }

    #[test]
    fn appends_make_the_directory_and_count_in_the_gauges() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (zone, st) = stats();
        let mut spool = Spool::new(dir.path().join("var/spool"), st);
        assert!(spool.is_empty());
        assert!(spool.append(&reports(3)));
        assert!(spool.append(&reports(2)));
        assert!(!spool.is_empty());
        let t = stats::totals(&zone);
        assert_eq!(t.spool_reports, 5);
        assert!(t.spool_bytes > 5 * 8, "{}", t.spool_bytes);
        let names: Vec<String> = std::fs::read_dir(dir.path().join("var/spool"))
            .expect("the directory was made")
            .map(|e| {
                e.expect("an entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(
            names[0].contains(&format!("-{}-1.spool", std::process::id())),
            "{names:?}"
        );
    }

    #[test]
    fn orphans_are_adopted_oldest_first_and_replayed_before_the_own_file() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (_zone, st) = stats();
        let mut older = Spool::new(dir.path().to_path_buf(), st.clone());
        assert!(older.append(&reports(1)));
        let mut newer = Spool::new(dir.path().to_path_buf(), st.clone());
        assert!(newer.append(&reports(2)));
        let mut me = Spool::new(dir.path().to_path_buf(), st);
        assert!(me.append(&reports(4)));
        me.adopt();
        assert!(me.adopted.is_empty(), "held by live writers");
        let newer_id = newer.own.as_ref().expect("a file").header.id;
        let older_id = older.own.as_ref().expect("a file").header.id;
        drop(newer);
        drop(older);
        me.adopt();
        assert_eq!(me.head(), Some(older_id));
        let mut order = Vec::new();
        while let Some(id) = me.head() {
            let recs = me.read(&id, 1).expect("read");
            assert_eq!(recs.len(), 1, "one record holds a report already");
            let rec = &recs[0];
            order.push(rec.reports.len());
            me.replayed(&id, rec.end, rec.reports.len() as u64);
            assert!(me.remove_if_drained(&id).expect("removed").is_some());
            if id == older_id {
                assert_eq!(me.head(), Some(newer_id));
            }
        }
        assert_eq!(order, [1, 2, 4]);
        assert!(me.read(&older_id, 100).expect("read").is_empty(), "gone");
        assert!(me.is_empty());
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("a directory").count(),
            0
        );
    }

    #[test]
    fn an_unwritable_directory_refuses_the_batch() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"not a directory").expect("written");
        let (_zone, st) = stats();
        let mut spool = Spool::new(blocker.join("spool"), st);
        assert!(!spool.append(&reports(1)));
        assert!(spool.is_empty(), "nothing was spooled");
    }
}
