//! The pieces every binary wire format of the node shares (`/cnode/blobs/1`,
//! `/cnode/rpc/1`): the decode error and a bounds-checked little-endian
//! reader. Each message starts with a version byte and a tag byte
//! ([`Reader::header`]); integers are little-endian; a decoder must consume
//! the whole message ([`Reader::end`]).

/// A message that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than its own headers say.
    #[error("message truncated")]
    Truncated,
    /// Longer than allowed.
    #[error("message of {0} bytes is over the limit")]
    Oversized(usize),
    /// An unknown version.
    #[error("unsupported protocol version {0}")]
    Version(u8),
    /// An unknown tag.
    #[error("unknown message tag {0}")]
    Tag(u8),
    /// A field that breaks the rules, or fields that do not make sense
    /// together.
    #[error("invalid message: {0}")]
    Invalid(&'static str),
}

/// Reads a message front to back; every read checks the length first.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// A reader over `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self(bytes)
    }

    /// The version byte, which must be `version`, then the tag byte.
    pub fn header(&mut self, version: u8) -> Result<u8, DecodeError> {
        let v = self.u8()?;
        if v != version {
            return Err(DecodeError::Version(v));
        }
        self.u8()
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    /// A little-endian `u16`.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        self.array().map(u16::from_le_bytes)
    }

    /// A little-endian `u32`.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_le_bytes)
    }

    /// A little-endian `u64`.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        self.array().map(u64::from_le_bytes)
    }

    /// `n` bytes of UTF-8.
    pub fn utf8(&mut self, n: usize) -> Result<String, DecodeError> {
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| DecodeError::Invalid("not UTF-8"))
    }

    /// Everything not read yet.
    pub fn rest(self) -> &'a [u8] {
        self.0
    }

    /// Succeeds only when everything was read.
    pub fn end(self) -> Result<(), DecodeError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Invalid("trailing bytes"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_refuses() {
        let bytes = [1, 7, 0x34, 0x12, 1, 0, 0, 0, b'h', b'i', 9];
        let mut r = Reader::new(&bytes);
        assert_eq!(r.header(1), Ok(7));
        assert_eq!(r.u16(), Ok(0x1234));
        assert_eq!(r.u32(), Ok(1));
        assert_eq!(r.utf8(2).as_deref(), Ok("hi"));
        assert_eq!(r.end(), Err(DecodeError::Invalid("trailing bytes")));
        assert_eq!(r.rest(), &[9]);
        assert_eq!(r.u64(), Err(DecodeError::Truncated));
        assert_eq!(Reader::new(&[2, 0]).header(1), Err(DecodeError::Version(2)));
        assert_eq!(Reader::new(&[1]).header(1), Err(DecodeError::Truncated));
        assert_eq!(
            Reader::new(&[0xff]).utf8(1),
            Err(DecodeError::Invalid("not UTF-8"))
        );
        assert_eq!(Reader::new(&[]).end(), Ok(()));
    }
}
