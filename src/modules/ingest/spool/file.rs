//! One spool file on disk, held under `flock(LOCK_EX)` by the writer that has it for as long
//! as that writer keeps it: made by its writer ([`SpoolFile::create`]) or claimed as an orphan
//! ([`SpoolFile::claim`]). A lock that the holder's death released is how an orphan is known.
//!
//! A file is made under a hidden name (`.NAME.new`), locked, given its header, fsynced, then
//! renamed to `NAME.spool` and the directory fsynced: a scanner never sees a `.spool` file that
//! is not locked by a live owner or whole. Every append is one positioned write and one
//! `fdatasync`; a failed append is cut off before the next. A replayed file is unlinked while
//! still locked, and the directory fsynced, before its progress row is forgotten.
//!
//! Blocking file I/O: called on the worker's I/O thread, never on an event loop.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::record::{self, Header, Next, Reader, Spooled, Tail, HEADER_LEN};

/// A spool file this writer holds locked.
pub struct SpoolFile {
    pub path: PathBuf,
    file: Flock<File>,
    pub header: Header,
    /// End of the last sound record: where the next append goes.
    end: u64,
    /// Start of the next record to replay.
    next: u64,
    /// Reports between `next` and `end`.
    reports: u64,
    /// A failed append may have left bytes after `end`: cut them before the next one.
    dirty: bool,
    /// Unreadable bytes follow the sound records: the file is kept for the operator, renamed,
    /// once what could be read is replayed.
    pub damaged: bool,
}

impl std::fmt::Debug for SpoolFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpoolFile")
            .field("path", &self.path)
            .field("end", &self.end)
            .field("next", &self.next)
            .field("reports", &self.reports)
            .finish()
    }
}

/// A record read for replay.
#[derive(Debug)]
pub struct Record {
    pub reports: Vec<Spooled>,
    /// Where the record ends: the file's progress once it is applied.
    pub end: u64,
}

impl SpoolFile {
    /// Makes `dir/NAME.spool`, locked, with `header`, durable.
    pub fn create(dir: &Path, name: &str, header: Header) -> io::Result<SpoolFile> {
        let hidden = dir.join(format!(".{name}.new"));
        let path = dir.join(format!("{name}.spool"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&hidden)?;
        let file = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
            let _ = std::fs::remove_file(&hidden);
            io::Error::from(e)
        })?;
        let made = file
            .write_all_at(&header.encode(), 0)
            .and_then(|()| file.sync_all())
            .and_then(|()| std::fs::rename(&hidden, &path))
            .and_then(|()| sync_dir(dir));
        if let Err(e) = made {
            let _ = std::fs::remove_file(&hidden);
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        Ok(SpoolFile::opened(path, file, header))
    }

    /// A held file with its header read or written, before its records are counted.
    fn opened(path: PathBuf, file: Flock<File>, header: Header) -> SpoolFile {
        SpoolFile {
            path,
            file,
            header,
            end: HEADER_LEN as u64,
            next: HEADER_LEN as u64,
            reports: 0,
            dirty: false,
            damaged: false,
        }
    }

    /// Claims the spool file at `path` if no one holds it: `None` when it is locked (its owner
    /// lives) or was unlinked meanwhile (replayed by whoever held it). A file whose header is
    /// not a spool header is an `InvalidData` error. The tail says how its records end.
    pub fn claim(path: &Path) -> io::Result<Option<(SpoolFile, Tail)>> {
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(f) => f,
            Err((_, Errno::EWOULDBLOCK)) => return Ok(None),
            Err((_, e)) => return Err(e.into()),
        };
        // Its owner may have unlinked it between our open and our lock.
        if !still_named(&file, path)? {
            return Ok(None);
        }
        let mut head = [0u8; HEADER_LEN];
        let header = (&*file)
            .read_exact(&mut head)
            .ok()
            .and_then(|()| Header::decode(&head))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not a spool header"))?;
        let mut f = SpoolFile::opened(path.to_path_buf(), file, header);
        let tail = f.scan()?;
        f.damaged = matches!(tail, Tail::Corrupt { .. });
        Ok(Some((f, tail)))
    }

    /// Reads the records after the header to find where the sound ones end and count them.
    fn scan(&mut self) -> io::Result<Tail> {
        (&*self.file).seek(SeekFrom::Start(HEADER_LEN as u64))?;
        let mut reader = Reader::new(BufReader::new(&*self.file));
        loop {
            match reader.read()? {
                Next::Record { body, len } => {
                    self.end += len;
                    self.reports += u64::from(record::count(&body));
                }
                Next::End(tail) => return Ok(tail),
            }
        }
    }

    /// Appends `record` (encoded by [`record::encode`], `reports` reports) and makes it
    /// durable: once this returns `Ok` the batch may be acknowledged.
    pub fn append(&mut self, record: &[u8], reports: u64) -> io::Result<()> {
        if self.dirty {
            self.file.set_len(self.end)?;
            self.dirty = false;
        }
        let written = self
            .file
            .write_all_at(record, self.end)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            self.dirty = true;
            return Err(e);
        }
        self.end += record.len() as u64;
        self.reports += reports;
        Ok(())
    }

    /// The next record to replay, if any.
    pub fn read_next(&self) -> io::Result<Option<Record>> {
        self.read_at(self.next)
    }

    /// Where the next record to replay starts.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// The record starting at `at` (the end of the one before), if any.
    pub fn read_at(&self, at: u64) -> io::Result<Option<Record>> {
        if at >= self.end {
            return Ok(None);
        }
        (&*self.file).seek(SeekFrom::Start(at))?;
        let input = BufReader::new((&*self.file).take(self.end - at));
        match Reader::new(input).read()? {
            Next::Record { body, len } => {
                let reports = record::decode(&body).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidData, "a sound record does not parse")
                })?;
                Ok(Some(Record {
                    reports,
                    end: at + len,
                }))
            }
            Next::End(_) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a record read sound before no longer is",
            )),
        }
    }

    /// The records up to `end` are applied: what waits shrinks.
    pub fn replayed(&mut self, end: u64, reports: u64) {
        self.next = end.min(self.end);
        self.reports = self.reports.saturating_sub(reports);
    }

    /// Skips the records that end at or before `offset` (applied by an earlier holder).
    pub fn skip_to(&mut self, offset: u64) -> io::Result<()> {
        let offset = offset.min(self.end);
        while self.next < offset {
            match self.read_next()? {
                Some(r) if r.end <= offset => self.replayed(r.end, r.reports.len() as u64),
                _ => break,
            }
        }
        Ok(())
    }

    /// Whether every record was replayed.
    pub fn drained(&self) -> bool {
        self.next >= self.end
    }

    /// Reports and bytes that wait to be replayed.
    pub fn waiting(&self) -> (u64, u64) {
        (self.reports, self.end - self.next)
    }

    /// Removes the replayed file (a damaged one is renamed `NAME.spool.damaged` and kept), then
    /// lets the lock go. The directory is fsynced: the file must not come back after a crash
    /// once its progress row is forgotten.
    pub fn remove(self) -> io::Result<()> {
        if self.damaged {
            let mut kept = self.path.clone().into_os_string();
            kept.push(".damaged");
            std::fs::rename(&self.path, kept)?;
        } else {
            std::fs::remove_file(&self.path)?;
        }
        match self.path.parent() {
            Some(dir) => sync_dir(dir),
            None => Ok(()),
        }
    }
}

/// Whether `path` still names the file `file` has open (not unlinked, nor replaced).
fn still_named(file: &File, path: &Path) -> io::Result<bool> {
    let held = file.metadata()?;
    match std::fs::metadata(path) {
        Ok(m) => Ok(m.dev() == held.dev() && m.ino() == held.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Makes the directory's entries durable (a new, renamed or removed file).
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Removes `path`, a hidden file a writer died while making (it holds no record), when no one
/// holds it and it is older than `age`.
pub fn remove_stale(path: &Path, age: std::time::Duration) -> io::Result<()> {
    let file = File::open(path)?;
    let old = file
        .metadata()?
        .modified()?
        .elapsed()
        .is_ok_and(|e| e > age);
    if !old {
        return Ok(());
    }
    if let Ok(file) = Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        if still_named(&file, path)? {
            std::fs::remove_file(path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::ingest::batch::Report;
    use crate::modules::ingest::decode::decode;

    fn header(n: u8) -> Header {
        Header {
            id: [n; 16],
            created_ns: i64::from(n),
        }
    }

    fn batch(n: usize) -> (Vec<u8>, u64) {
        let raw = [0x01, 0x03, 0x20, 0x00, 0x67, 0x40, 0x9a, 0x00];
        let (_, payload) = decode("sensors/door-1/event", &raw).expect("a valid event");
        let reports: Vec<Report> = (0..n)
            .map(|i| Report {
                ticket: None,
                device_id: "door-1".into(),
                payload: payload.clone(),
                raw: raw.to_vec(),
                received_at: chrono::DateTime::from_timestamp_nanos(i as i64),
            })
            .collect();
        let mut out = Vec::new();
        record::encode(&reports, &mut out);
        (out, n as u64)
    }

    #[test]
    fn a_held_file_is_not_claimed_and_a_released_one_is_with_its_records() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut f = SpoolFile::create(dir.path(), "a", header(1)).expect("created");
        assert!(!dir.path().join(".a.new").exists(), "renamed");
        let (rec, n) = batch(3);
        f.append(&rec, n).expect("appended");
        f.append(&batch(2).0, 2).expect("appended");
        let path = f.path.clone();
        assert!(SpoolFile::claim(&path).expect("no error").is_none(), "held");
        drop(f);
        let (mut g, tail) = SpoolFile::claim(&path)
            .expect("no error")
            .expect("an orphan");
        assert_eq!(tail, Tail::Clean);
        assert_eq!(g.header, header(1));
        assert_eq!(g.waiting().0, 5);
        let first = g.read_next().expect("read").expect("a record");
        assert_eq!(first.reports.len(), 3);
        g.replayed(first.end, 3);
        let second = g.read_next().expect("read").expect("a record");
        assert_eq!(second.reports.len(), 2);
        g.replayed(second.end, 2);
        assert!(g.drained());
        assert_eq!(g.waiting(), (0, 0));
        g.remove().expect("removed");
        assert!(!path.exists());
    }

    #[test]
    fn a_claimed_file_skips_what_an_earlier_holder_applied() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut f = SpoolFile::create(dir.path(), "b", header(2)).expect("created");
        for n in [1, 2, 3] {
            f.append(&batch(n).0, n as u64).expect("appended");
        }
        let path = f.path.clone();
        let first_end = HEADER_LEN as u64 + batch(1).0.len() as u64;
        drop(f);
        let (mut g, _) = SpoolFile::claim(&path)
            .expect("no error")
            .expect("an orphan");
        g.skip_to(first_end).expect("skipped");
        assert_eq!(g.waiting().0, 5);
        let next = g.read_next().expect("read").expect("a record");
        assert_eq!(next.reports.len(), 2);
    }

    #[test]
    fn a_torn_append_is_not_read_and_is_cut_before_the_next() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut f = SpoolFile::create(dir.path(), "c", header(3)).expect("created");
        f.append(&batch(1).0, 1).expect("appended");
        let path = f.path.clone();
        let (rec, _) = batch(4);
        f.file
            .write_all_at(&rec[..rec.len() / 2], f.end)
            .expect("a half record");
        drop(f);
        let (mut g, tail) = SpoolFile::claim(&path)
            .expect("no error")
            .expect("an orphan");
        assert_eq!(
            tail,
            Tail::Torn {
                bytes: (rec.len() / 2) as u64
            }
        );
        assert_eq!(g.waiting().0, 1);
        g.dirty = true;
        g.append(&batch(2).0, 2)
            .expect("appended over the torn bytes");
        drop(g);
        let (g, tail) = SpoolFile::claim(&path)
            .expect("no error")
            .expect("an orphan");
        assert_eq!(tail, Tail::Clean);
        assert_eq!(g.waiting().0, 3);
    }

    #[test]
    fn an_unlinked_file_is_not_claimed() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let f = SpoolFile::create(dir.path(), "d", header(4)).expect("created");
        let path = f.path.clone();
        let early = File::open(&path).expect("opened before the unlink");
        assert!(still_named(&early, &path).expect("stat"));
        f.remove().expect("removed");
        let early = Flock::lock(early, FlockArg::LockExclusiveNonblock)
            .unwrap_or_else(|_| panic!("the lock went with the unlinked file"));
        assert!(!still_named(&early, &path).expect("stat"), "unlinked");
        assert!(SpoolFile::claim(&path).expect("no error").is_none());
        std::fs::write(&path, b"a new file of the same name").expect("written");
        assert!(!still_named(&early, &path).expect("stat"), "replaced");
        assert_eq!(
            SpoolFile::claim(&path).map_err(|e| e.kind()).err(),
            Some(io::ErrorKind::InvalidData)
        );
    }
}
