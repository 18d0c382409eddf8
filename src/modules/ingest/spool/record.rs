//! The spool's file format: a header, then one record per spooled batch, each framed with its
//! length and a CRC-32, so that a reader finds where the acknowledged records end.
//!
//! ```text
//! file   := header record*
//! header := "BZSPOOL1" id:[u8; 16] created:i64 crc:u32             36 bytes
//! record := len:u32 crc:u32 body                                   crc: CRC-32 of len and body
//! body   := count:u32 report{count}
//! report := received_at:i64 channel:u8 id_len:u8 device_id raw_len:u32 raw
//! ```
//!
//! Integers are big-endian; `created` and `received_at` are nanoseconds since 1970 (UTC);
//! `channel` is 1 counter, 2 event, 3 status; `id` names the file in PostgreSQL's
//! `spool_replay` (how far it was replayed), whatever the file is called. A report keeps what
//! the store needs again (device, topic kind, the payload as received, the receive time) and
//! not the broker's ticket, which means nothing outside the worker that held it: the payload is
//! decoded again on replay.
//!
//! A record is appended with one write and made durable with one fsync before its batch is
//! acknowledged, so only the last record of a file can be incomplete (the process or the machine
//! died during the append: never acknowledged). [`Reader`] stops at the first record that is
//! not whole and sound and says whether it was such a torn tail ([`Tail::Torn`]: nothing sound
//! could follow it) or damage in the middle of the file ([`Tail::Corrupt`]: bytes follow it).
//! Pure functions over bytes; the file handling is `file.rs`'s.

use std::io::{self, BufRead, Read};

use chrono::{DateTime, Utc};

use crate::modules::ingest::batch::Report;
use crate::modules::ingest::decode::Channel;

/// The first bytes of every spool file (version 1 of this format).
pub const MAGIC: &[u8; 8] = b"BZSPOOL1";
/// Length of the header.
pub const HEADER_LEN: usize = 36;
/// Length and checksum before each record's body.
pub const FRAME_LEN: usize = 8;
/// The largest body a record may have; a length above it is damage. A batch of 1,000 reports
/// of the largest payload (64 events) is about 600 KiB.
pub const MAX_BODY: u32 = 16 << 20;

/// A spool file's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The file's identity in PostgreSQL's `spool_replay`.
    pub id: [u8; 16],
    /// When the file was made, in nanoseconds since 1970: older files are replayed first.
    pub created_ns: i64,
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..8].copy_from_slice(MAGIC);
        b[8..24].copy_from_slice(&self.id);
        b[24..32].copy_from_slice(&self.created_ns.to_be_bytes());
        let crc = crc32fast::hash(&b[..32]);
        b[32..].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// The header at the start of `b`; `None` when it is short, of another format or damaged.
    pub fn decode(b: &[u8]) -> Option<Header> {
        let b = b.get(..HEADER_LEN)?;
        if &b[..8] != MAGIC || crc32fast::hash(&b[..32]).to_be_bytes() != b[32..] {
            return None;
        }
        Some(Header {
            id: b[8..24].try_into().expect("16 bytes"),
            created_ns: i64::from_be_bytes(b[24..32].try_into().expect("8 bytes")),
        })
    }
}

/// One report as the spool keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spooled {
    pub device_id: String,
    /// The sensor topic it came on (never [`Channel::Configuration`]: sensors do not send it).
    pub channel: Channel,
    /// The payload as received.
    pub raw: Vec<u8>,
    pub received_at: DateTime<Utc>,
}

fn channel_byte(c: Channel) -> u8 {
    match c {
        Channel::Counter => 1,
        Channel::Event => 2,
        Channel::Status => 3,
        Channel::Configuration => 4,
    }
}

fn channel_of(b: u8) -> Option<Channel> {
    match b {
        1 => Some(Channel::Counter),
        2 => Some(Channel::Event),
        3 => Some(Channel::Status),
        4 => Some(Channel::Configuration),
        _ => None,
    }
}

/// Appends the record of `reports` (one batch) to `out`.
pub fn encode(reports: &[Report], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_LEN]);
    let count = u32::try_from(reports.len()).expect("a batch is far below 2^32 reports");
    out.extend_from_slice(&count.to_be_bytes());
    for r in reports {
        // Nanoseconds fit an i64 until 2262; later times are not the receive times of today.
        let ns = r.received_at.timestamp_nanos_opt().unwrap_or(i64::MAX);
        out.extend_from_slice(&ns.to_be_bytes());
        out.push(channel_byte(r.payload.channel()));
        let id = r.device_id.as_bytes();
        out.push(u8::try_from(id.len()).expect("a device id is at most 64 bytes"));
        out.extend_from_slice(id);
        let raw = u32::try_from(r.raw.len()).expect("a payload fits an MQTT packet");
        out.extend_from_slice(&raw.to_be_bytes());
        out.extend_from_slice(&r.raw);
    }
    let len = u32::try_from(out.len() - start - FRAME_LEN).expect("a record is below 4 GiB");
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    let crc = checksum(&out[start..start + 4], &out[start + FRAME_LEN..]);
    out[start + 4..start + FRAME_LEN].copy_from_slice(&crc.to_be_bytes());
}

/// CRC-32 of a record's length field and body.
fn checksum(len: &[u8], body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(len);
    h.update(body);
    h.finalize()
}

/// How many reports a sound body holds.
pub fn count(body: &[u8]) -> u32 {
    body.get(..4)
        .map_or(0, |b| u32::from_be_bytes(b.try_into().expect("4 bytes")))
}

/// The reports of a sound body, in batch order; `None` if it does not parse (a body whose
/// checksum matched, so a writer's bug, not damage).
pub fn decode(body: &[u8]) -> Option<Vec<Spooled>> {
    let mut b = Bytes(body);
    let n = b.u32()?;
    let mut out = Vec::with_capacity(n.min(4096) as usize);
    for _ in 0..n {
        let ns = i64::from_be_bytes(b.take(8)?.try_into().ok()?);
        let channel = channel_of(b.take(1)?[0])?;
        let id_len = usize::from(b.take(1)?[0]);
        let device_id = std::str::from_utf8(b.take(id_len)?).ok()?.to_string();
        let raw_len = b.u32()? as usize;
        let raw = b.take(raw_len)?.to_vec();
        out.push(Spooled {
            device_id,
            channel,
            raw,
            received_at: DateTime::from_timestamp_nanos(ns),
        });
    }
    b.0.is_empty().then_some(out)
}

struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
}

/// What ends the sound records of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// The end of the data: nothing was torn.
    Clean,
    /// An incomplete last record (`bytes` long, to the end): an append the crash cut short,
    /// never acknowledged.
    Torn { bytes: u64 },
    /// A record that fails its length or checksum check with data after it: `bytes` from it to
    /// the end cannot be read, and acknowledged reports may be among them.
    Corrupt { bytes: u64 },
}

/// What [`Reader::read`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// A sound record: its body and its length with the frame.
    Record { body: Vec<u8>, len: u64 },
    /// No more sound records, and why.
    End(Tail),
}

/// Reads records one by one from the start of a record (just after the header, or after a
/// record already read).
pub struct Reader<R> {
    input: R,
}

impl<R: BufRead> Reader<R> {
    pub fn new(input: R) -> Reader<R> {
        Reader { input }
    }

    /// The next record, or the end and what it looked like.
    pub fn read(&mut self) -> io::Result<Next> {
        let mut frame = [0u8; FRAME_LEN];
        let got = read_full(&mut self.input, &mut frame)?;
        if got == 0 {
            return Ok(Next::End(Tail::Clean));
        }
        if got < FRAME_LEN {
            return Ok(Next::End(Tail::Torn { bytes: got as u64 }));
        }
        let len = u32::from_be_bytes(frame[..4].try_into().expect("4 bytes"));
        let crc = u32::from_be_bytes(frame[4..].try_into().expect("4 bytes"));
        if !(4..=MAX_BODY).contains(&len) {
            // A length no writer wrote: torn if only zeros follow (space the crash left
            // unwritten), damage otherwise.
            let (rest, zeros) = self.rest()?;
            let bytes = FRAME_LEN as u64 + rest;
            let all_zero = zeros && frame.iter().all(|b| *b == 0);
            return Ok(Next::End(if all_zero {
                Tail::Torn { bytes }
            } else {
                Tail::Corrupt { bytes }
            }));
        }
        let mut body = vec![0u8; len as usize];
        let got = read_full(&mut self.input, &mut body)?;
        if got < body.len() {
            return Ok(Next::End(Tail::Torn {
                bytes: (FRAME_LEN + got) as u64,
            }));
        }
        if checksum(&frame[..4], &body) != crc {
            let (rest, _) = self.rest()?;
            let bytes = (FRAME_LEN + body.len()) as u64 + rest;
            return Ok(Next::End(if rest == 0 {
                Tail::Torn { bytes }
            } else {
                Tail::Corrupt { bytes }
            }));
        }
        Ok(Next::Record {
            body,
            len: (FRAME_LEN + len as usize) as u64,
        })
    }

    /// How many bytes are left, and whether all of them are zero.
    fn rest(&mut self) -> io::Result<(u64, bool)> {
        let (mut n, mut zeros) = (0u64, true);
        loop {
            let buf = self.input.fill_buf()?;
            if buf.is_empty() {
                return Ok((n, zeros));
            }
            zeros &= buf.iter().all(|b| *b == 0);
            let k = buf.len();
            n += k as u64;
            self.input.consume(k);
        }
    }
}

/// Reads until `buf` is full or the input ends; how many bytes it read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::ingest::decode::decode as decode_payload;

    fn report(device_id: &str, topic: &str, raw: &[u8], ns: i64) -> Report {
        let (_, payload) = decode_payload(topic, raw).expect("a valid test payload");
        Report {
            ticket: Some(7),
            device_id: device_id.to_string(),
            payload,
            raw: raw.to_vec(),
            received_at: DateTime::from_timestamp_nanos(ns),
        }
    }

    /// PROTOCOL.md section 7's legacy report.
    const LEGACY: [u8; 16] = [
        0x00, 0x05, 0x00, 0x03, 0x04, 0xd2, 0x04, 0x57, 0x18, 0x0b, 0x16, 0x12, 0x1e, 0x05, 0xff,
        0xff,
    ];
    /// One entry event.
    const EVENT: [u8; 8] = [0x01, 0x03, 0x20, 0x00, 0x67, 0x40, 0x9a, 0x00];

    fn batch_a() -> Vec<Report> {
        vec![
            report(
                "door-1",
                "sensors/door-1/counter",
                &LEGACY,
                1_700_000_000_123_456_789,
            ),
            report(
                "door-2",
                "sensors/door-2/event",
                &EVENT,
                1_700_000_001_000_000_000,
            ),
        ]
    }

    fn batch_b() -> Vec<Report> {
        vec![report(
            "door-1",
            "sensors/door-1/event",
            &EVENT,
            1_700_000_002_000_000_000,
        )]
    }

    fn records(file: &[u8]) -> (Vec<Vec<Spooled>>, Tail) {
        let mut r = Reader::new(file);
        let mut out = Vec::new();
        loop {
            match r.read().expect("reading a slice does not fail") {
                Next::Record { body, len } => {
                    assert_eq!(len as usize, FRAME_LEN + body.len());
                    out.push(decode(&body).expect("a sound body decodes"));
                }
                Next::End(tail) => return (out, tail),
            }
        }
    }

    fn spooled(reports: &[Report]) -> Vec<Spooled> {
        reports
            .iter()
            .map(|r| Spooled {
                device_id: r.device_id.clone(),
                channel: r.payload.channel(),
                raw: r.raw.clone(),
                received_at: r.received_at,
            })
            .collect()
    }

    #[test]
    fn a_record_has_this_layout() {
        let mut out = Vec::new();
        encode(&batch_b(), &mut out);
        let body_len = 4 + 8 + 1 + 1 + 6 + 4 + 8;
        assert_eq!(out.len(), FRAME_LEN + body_len);
        assert_eq!(out[..4], (body_len as u32).to_be_bytes());
        assert_eq!(out[8..12], [0, 0, 0, 1], "one report");
        assert_eq!(
            out[12..20],
            1_700_000_002_000_000_000i64.to_be_bytes(),
            "received_at in ns"
        );
        assert_eq!(out[20..22], [2, 6], "event channel, 6-byte device id");
        assert_eq!(&out[22..28], b"door-1");
        assert_eq!(out[28..32], [0, 0, 0, 8]);
        assert_eq!(out[32..], EVENT);
        let crc = crc32fast::hash(&[&out[..4], &out[8..]].concat());
        assert_eq!(out[4..8], crc.to_be_bytes());
    }

    #[test]
    fn records_come_back_in_order_without_tickets() {
        let (a, b) = (batch_a(), batch_b());
        let mut file = Vec::new();
        encode(&a, &mut file);
        encode(&b, &mut file);
        let (got, tail) = records(&file);
        assert_eq!(tail, Tail::Clean);
        assert_eq!(got, vec![spooled(&a), spooled(&b)]);
        assert_eq!(got[0][0].received_at.timestamp_subsec_nanos(), 123_456_789);
    }

    #[test]
    fn a_torn_tail_is_ignored() {
        let mut file = Vec::new();
        encode(&batch_a(), &mut file);
        let whole = file.len();
        encode(&batch_b(), &mut file);
        let full = file.len();
        for cut in whole + 1..full {
            let (got, tail) = records(&file[..cut]);
            assert_eq!(got, vec![spooled(&batch_a())], "cut at {cut}");
            assert_eq!(
                tail,
                Tail::Torn {
                    bytes: (cut - whole) as u64
                },
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn zeros_after_the_last_record_are_a_torn_tail() {
        let mut file = Vec::new();
        encode(&batch_a(), &mut file);
        file.extend_from_slice(&[0; 100]);
        let (got, tail) = records(&file);
        assert_eq!(got.len(), 1);
        assert_eq!(tail, Tail::Torn { bytes: 100 });
    }

    #[test]
    fn a_garbled_last_record_is_torn_but_a_garbled_middle_one_is_damage() {
        let mut file = Vec::new();
        encode(&batch_a(), &mut file);
        let second = file.len();
        encode(&batch_b(), &mut file);
        let third = file.len();
        encode(&batch_b(), &mut file);

        let mut last = file[..third].to_vec();
        last[second + 20] ^= 0x40;
        let (got, tail) = records(&last);
        assert_eq!(got.len(), 1);
        assert_eq!(
            tail,
            Tail::Torn {
                bytes: (third - second) as u64
            }
        );

        let mut middle = file.clone();
        middle[second + 20] ^= 0x40;
        let (got, tail) = records(&middle);
        assert_eq!(
            got,
            vec![spooled(&batch_a())],
            "reading stops at the damage"
        );
        assert_eq!(
            tail,
            Tail::Corrupt {
                bytes: (file.len() - second) as u64
            }
        );

        let mut length = file.clone();
        length[second] = 0xff;
        let (got, tail) = records(&length);
        assert_eq!(got.len(), 1);
        assert!(matches!(tail, Tail::Corrupt { .. }), "{tail:?}");
    }

    #[test]
    fn the_header_round_trips_and_refuses_damage() {
        let h = Header {
            id: *b"0123456789abcdef",
            created_ns: 1_700_000_000_000_000_001,
        };
        let b = h.encode();
        assert_eq!(&b[..8], b"BZSPOOL1");
        assert_eq!(Header::decode(&b), Some(h));
        assert_eq!(Header::decode(&b[..HEADER_LEN - 1]), None);
        let mut bad = b;
        bad[10] ^= 1;
        assert_eq!(Header::decode(&bad), None);
    }

    #[test]
    fn a_body_with_trailing_bytes_does_not_decode() {
        let mut file = Vec::new();
        encode(&batch_b(), &mut file);
        let mut body = file[FRAME_LEN..].to_vec();
        assert!(decode(&body).is_some());
        body.push(0);
        assert_eq!(decode(&body), None);
        assert_eq!(count(&file[FRAME_LEN..]), 1);
    }
}
