//! Versioned, little-endian encoding of aggregate state.
//!
//! Every state starts with a two-byte header: a tag naming the handler that
//! wrote it and the version of its layout. The tag lets a handler tell
//! another handler's bytes from a corrupt copy of its own; the version lets
//! a later release read, or refuse, an older layout. The rest is a flat
//! sequence of fixed-width little-endian fields, read in the order they were
//! written, and every byte must be consumed.

use std::fmt;

/// Why state bytes could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    /// The state was written by another handler.
    Foreign {
        /// The tag this handler writes.
        expected: u8,
        /// The tag found in the state.
        found: u8,
    },
    /// The state was written with a layout version this build cannot read.
    Version {
        /// The version this build reads and writes.
        expected: u8,
        /// The version found in the state.
        found: u8,
    },
    /// The state ends before its last field.
    Truncated,
    /// Bytes are left over after the last field.
    Trailing,
    /// A field holds a value the handler never writes.
    Invalid(&'static str),
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Foreign { expected, found } => write!(
                f,
                "state belongs to another handler (tag {found:#04x}, expected {expected:#04x})"
            ),
            Self::Version { expected, found } => {
                write!(f, "unsupported state version {found} (expected {expected})")
            }
            Self::Truncated => f.write_str("state is truncated"),
            Self::Trailing => f.write_str("state has trailing bytes"),
            Self::Invalid(what) => write!(f, "state is corrupt: {what}"),
        }
    }
}

impl std::error::Error for StateError {}

/// Writes a state: the header, then fields in order.
#[derive(Debug)]
pub struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    /// Starts a state with the header `tag`, `version`.
    pub fn new(tag: u8, version: u8) -> Self {
        Self {
            bytes: vec![tag, version],
        }
    }

    /// Appends a byte.
    pub fn u8(&mut self, value: u8) -> &mut Self {
        self.bytes.push(value);
        self
    }

    /// Appends a `u32`, little-endian.
    pub fn u32(&mut self, value: u32) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// Appends a `u64`, little-endian.
    pub fn u64(&mut self, value: u64) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// Appends an `i64`, little-endian.
    pub fn i64(&mut self, value: i64) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// Appends an `f64` as its IEEE 754 bits, little-endian.
    pub fn f64(&mut self, value: f64) -> &mut Self {
        self.u64(value.to_bits())
    }

    /// The encoded state.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.bytes)
    }
}

/// Reads a state written by [`Writer`], field by field.
#[derive(Debug)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Checks the header of `bytes` and returns a reader positioned after
    /// it, or `None` when `bytes` is empty (the aggregate of no payloads).
    pub fn open(bytes: &'a [u8], tag: u8, version: u8) -> Result<Option<Self>, StateError> {
        let (found_tag, found_version, rest) = match bytes {
            [] => return Ok(None),
            [found_tag, found_version, rest @ ..] => (*found_tag, *found_version, rest),
            [_] => return Err(StateError::Truncated),
        };
        if found_tag != tag {
            return Err(StateError::Foreign {
                expected: tag,
                found: found_tag,
            });
        }
        if found_version != version {
            return Err(StateError::Version {
                expected: version,
                found: found_version,
            });
        }
        Ok(Some(Self { rest }))
    }

    /// Number of bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], StateError> {
        let (field, rest) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or(StateError::Truncated)?;
        self.rest = rest;
        Ok(*field)
    }

    /// Reads a byte.
    pub fn u8(&mut self) -> Result<u8, StateError> {
        self.take::<1>().map(|[byte]| byte)
    }

    /// Reads a little-endian `u32`.
    pub fn u32(&mut self) -> Result<u32, StateError> {
        self.take().map(u32::from_le_bytes)
    }

    /// Reads a little-endian `u64`.
    pub fn u64(&mut self) -> Result<u64, StateError> {
        self.take().map(u64::from_le_bytes)
    }

    /// Reads a little-endian `i64`.
    pub fn i64(&mut self) -> Result<i64, StateError> {
        self.take().map(i64::from_le_bytes)
    }

    /// Reads an `f64` from its little-endian IEEE 754 bits.
    pub fn f64(&mut self) -> Result<f64, StateError> {
        self.u64().map(f64::from_bits)
    }

    /// Ends the reading: every byte must have been consumed.
    pub fn finish(self) -> Result<(), StateError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(StateError::Trailing)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAG: u8 = b'T';

    #[test]
    fn fields_round_trip_in_order() {
        let bytes = Writer::new(TAG, 3)
            .u8(7)
            .u32(0xdead_beef)
            .u64(u64::MAX)
            .i64(-5)
            .f64(-0.25)
            .finish();
        let mut reader = Reader::open(&bytes, TAG, 3)
            .expect("valid header")
            .expect("not empty");
        assert_eq!(reader.u8(), Ok(7));
        assert_eq!(reader.u32(), Ok(0xdead_beef));
        assert_eq!(reader.u64(), Ok(u64::MAX));
        assert_eq!(reader.i64(), Ok(-5));
        assert_eq!(reader.f64(), Ok(-0.25));
        assert_eq!(reader.remaining(), 0);
        assert_eq!(reader.finish(), Ok(()));
    }

    #[test]
    fn fields_are_little_endian() {
        let bytes = Writer::new(TAG, 1).u32(1).finish();
        assert_eq!(bytes, [TAG, 1, 1, 0, 0, 0]);
    }

    #[test]
    fn empty_bytes_are_no_state() {
        assert!(matches!(Reader::open(&[], TAG, 1), Ok(None)));
    }

    #[test]
    fn header_errors() {
        let cases: [(&[u8], StateError); 3] = [
            (&[TAG], StateError::Truncated),
            (
                &[b'X', 1],
                StateError::Foreign {
                    expected: TAG,
                    found: b'X',
                },
            ),
            (
                &[TAG, 9],
                StateError::Version {
                    expected: 1,
                    found: 9,
                },
            ),
        ];
        for (bytes, expected) in cases {
            let err = Reader::open(bytes, TAG, 1).expect_err("bad header");
            assert_eq!(err, expected, "{bytes:?}");
        }
    }

    #[test]
    fn short_and_long_bodies_are_errors() {
        let mut reader = Reader::open(&[TAG, 1, 1, 2, 3], TAG, 1)
            .expect("valid header")
            .expect("not empty");
        assert_eq!(reader.u64(), Err(StateError::Truncated));

        let mut reader = Reader::open(&[TAG, 1, 1, 2], TAG, 1)
            .expect("valid header")
            .expect("not empty");
        assert_eq!(reader.u8(), Ok(1));
        assert_eq!(reader.finish(), Err(StateError::Trailing));
    }

    #[test]
    fn errors_read_as_short_sentences() {
        let err = StateError::Foreign {
            expected: b'L',
            found: b'C',
        };
        assert_eq!(
            err.to_string(),
            "state belongs to another handler (tag 0x43, expected 0x4c)"
        );
        assert_eq!(
            StateError::Invalid("negative minimum").to_string(),
            "state is corrupt: negative minimum"
        );
    }
}
