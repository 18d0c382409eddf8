//! A cursor over one packet's body: integers, packet identifiers and binary fields, each failing
//! with the name of the field the body ended in. Strings are read in `strings.rs`.

use bytes::Bytes;

use super::CodecError;

/// Reads fields front to back from a packet body (variable header and payload).
pub(crate) struct Reader<'a> {
    body: &'a Bytes,
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(body: &'a Bytes) -> Self {
        Reader { body, pos: 0 }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.body.len()
    }

    /// Takes the next `n` bytes as a slice.
    pub(crate) fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], CodecError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.body.len())
            .ok_or(CodecError::Truncated { field })?;
        let s = &self.body[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, CodecError> {
        Ok(self.take(1, field)?[0])
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, CodecError> {
        let b = self.take(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A packet identifier, which is never 0 ([MQTT-2.3.1-1]).
    pub(crate) fn packet_id(&mut self, packet: &'static str) -> Result<u16, CodecError> {
        match self.u16("packet identifier")? {
            0 => Err(CodecError::PacketId { packet }),
            id => Ok(id),
        }
    }

    /// Binary data with a two-byte length (1.5.3 shape), shared with the body, not copied.
    pub(crate) fn binary(&mut self, field: &'static str) -> Result<Bytes, CodecError> {
        let n = usize::from(self.u16(field)?);
        let start = self.pos;
        self.take(n, field)?;
        Ok(self.body.slice(start..start + n))
    }

    /// The rest of the body, shared, not copied.
    pub(crate) fn rest(&mut self) -> Bytes {
        let start = self.pos.min(self.body.len());
        self.pos = self.body.len();
        self.body.slice(start..)
    }

    /// Fails if bytes remain after the last field of a fixed layout.
    pub(crate) fn finish(&self, packet: &'static str) -> Result<(), CodecError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(CodecError::TrailingBytes { packet })
        }
    }
}

/// Appends binary data with its two-byte length.
pub(crate) fn put_binary(
    data: &[u8],
    field: &'static str,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    let n = u16::try_from(data.len()).map_err(|_| CodecError::TooLong { field })?;
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(data);
    Ok(())
}
