//! The chunked transfer coding (RFC 9112 7.1), decoded incrementally: the connection feeds
//! whatever it has read and gets the data back, however the input was split.
//!
//! Strict where lenient readers have been used to smuggle requests: a size is 1 to 16 hex digits
//! and nothing else (no `0x`, sign, inner or leading spaces), whitespace after it only before a
//! `;` extension, every line ends in CRLF (a bare CR or bare LF is 400), chunk data is followed
//! by CRLF exactly, trailer fields are well-formed (no obs-fold) and then dropped. Chunk lines are
//! bounded (4 KiB with their extensions), and so is the trailer section.

use super::{hex_value, ParseError};

/// More hex digits than fit a `u64` are refused before they overflow.
const MAX_SIZE_DIGITS: u8 = 16;

/// A chunk-size line, extensions and CRLF included.
const MAX_CHUNK_LINE: usize = 4096;

/// The trailer section, unless [`ChunkedDecoder::with_max_trailer`] says otherwise.
const DEFAULT_MAX_TRAILER: usize = 8 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Hex digits of a chunk size.
    Size,
    /// Whitespace after the size: only a `;` may follow.
    SizeSpace,
    /// Chunk extensions, up to the CR.
    Extension,
    /// CR of the size line seen.
    SizeLf,
    /// `left` bytes of chunk data to go.
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer field line, or of the final CRLF.
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    /// CR of the final CRLF seen.
    EndLf,
    Done,
    /// An error was returned; it is returned again.
    Failed(ParseError),
}

/// Incremental chunked body decoder.
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: State,
    /// The size being read, then the data left in the chunk.
    left: u64,
    digits: u8,
    /// Bytes of the current chunk line, or of the trailer section.
    line: usize,
    total: u64,
    max_body: u64,
    max_trailer: usize,
}

impl ChunkedDecoder {
    /// A decoder for one body of at most `max_body` decoded bytes (0: unlimited); more gives 413,
    /// as soon as a chunk size announces it.
    pub fn new(max_body: u64) -> Self {
        ChunkedDecoder {
            state: State::Size,
            left: 0,
            digits: 0,
            line: 0,
            total: 0,
            max_body,
            max_trailer: DEFAULT_MAX_TRAILER,
        }
    }

    /// Bounds the trailer section (8 KiB by default); more gives 431.
    pub fn with_max_trailer(mut self, max_trailer: usize) -> Self {
        self.max_trailer = max_trailer;
        self
    }

    /// Decoded bytes so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Consumes from `input` and appends the decoded data to `out`. Returns the bytes consumed,
    /// which is all of `input` unless the body ended inside it, and whether it has ended (the
    /// bytes after it belong to the next request). After an error, returns that error again.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(usize, bool), ParseError> {
        let mut at = 0;
        while let Some(&b) = input.get(at) {
            match self.state {
                State::Done => break,
                State::Failed(e) => return Err(e),
                State::Data => at += self.data(&input[at..], out),
                _ => {
                    if let Err(e) = self.step(b) {
                        self.state = State::Failed(e);
                        return Err(e);
                    }
                    at += 1;
                }
            }
        }
        match self.state {
            State::Failed(e) => Err(e),
            state => Ok((at, state == State::Done)),
        }
    }

    /// Copies chunk data; returns how much.
    fn data(&mut self, input: &[u8], out: &mut Vec<u8>) -> usize {
        let n = usize::try_from(self.left).map_or(input.len(), |left| left.min(input.len()));
        out.extend_from_slice(&input[..n]);
        self.left -= n as u64;
        self.total += n as u64;
        if self.left == 0 {
            self.state = State::DataCr;
        }
        n
    }

    /// Takes one byte outside chunk data.
    fn step(&mut self, b: u8) -> Result<(), ParseError> {
        self.state = match self.state {
            State::Size | State::SizeSpace | State::Extension | State::SizeLf => {
                self.line += 1;
                if self.line > MAX_CHUNK_LINE {
                    return Err(ParseError::bad("chunk size line too long"));
                }
                self.size_line(b)?
            }
            State::DataCr if b == b'\r' => State::DataLf,
            State::DataLf if b == b'\n' => {
                self.line = 0;
                self.digits = 0;
                State::Size
            }
            State::DataCr | State::DataLf => {
                return Err(ParseError::bad("chunk data not followed by CRLF"))
            }
            _ => {
                self.line += 1;
                if self.line > self.max_trailer {
                    return Err(ParseError::fields_too_large("trailer section too large"));
                }
                self.trailer(b)?
            }
        };
        Ok(())
    }

    /// A byte of `chunk-size [ chunk-ext ] CRLF`.
    fn size_line(&mut self, b: u8) -> Result<State, ParseError> {
        if self.state == State::Size {
            if let Some(digit) = hex_value(b) {
                if self.digits == MAX_SIZE_DIGITS {
                    return Err(ParseError::bad("chunk size too large"));
                }
                self.digits += 1;
                self.left = self.left << 4 | u64::from(digit);
                return Ok(State::Size);
            }
            if self.digits == 0 {
                return Err(ParseError::bad("chunk size missing"));
            }
        }
        Ok(match (self.state, b) {
            (State::Size | State::SizeSpace, b' ' | b'\t') => State::SizeSpace,
            (State::Size | State::SizeSpace, b';') => State::Extension,
            (State::Size | State::Extension, b'\r') => State::SizeLf,
            (State::Extension, b'\t' | 0x20..=0x7e | 0x80..=0xff) => State::Extension,
            (State::Extension, _) => {
                return Err(ParseError::bad("control byte in chunk extension"))
            }
            (State::SizeLf, b'\n') => self.chunk_start()?,
            (State::SizeLf, _) => return Err(ParseError::bad("bare CR in chunk size line")),
            _ => return Err(ParseError::bad("invalid chunk size")),
        })
    }

    /// The size line is over: data, or the trailer section after the last chunk.
    fn chunk_start(&mut self) -> Result<State, ParseError> {
        self.line = 0;
        if self.left == 0 {
            return Ok(State::TrailerStart);
        }
        if self.max_body > 0 && self.total.saturating_add(self.left) > self.max_body {
            return Err(ParseError::body_too_large());
        }
        Ok(State::Data)
    }

    /// A byte of `*( field-line CRLF ) CRLF` after the last chunk.
    fn trailer(&mut self, b: u8) -> Result<State, ParseError> {
        Ok(match (self.state, b) {
            (State::TrailerStart, b'\r') => State::EndLf,
            (State::TrailerStart | State::TrailerName, _) if is_tchar(b) => State::TrailerName,
            (State::TrailerName, b':') => State::TrailerValue,
            (State::TrailerValue, b'\r') => State::TrailerLf,
            (State::TrailerValue, b'\t' | 0x20..=0x7e | 0x80..=0xff) => State::TrailerValue,
            (State::TrailerLf, b'\n') => State::TrailerStart,
            (State::EndLf, b'\n') => State::Done,
            (State::TrailerLf | State::EndLf, _) => {
                return Err(ParseError::bad("bare CR in trailer section"))
            }
            _ => return Err(ParseError::bad("invalid trailer field")),
        })
    }
}

/// RFC 9110 5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests;
