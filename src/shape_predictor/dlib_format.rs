//! Reading dlib's binary serialisation (`dlib/serialize.h`), as much of it as a shape predictor
//! uses: integers, floats, and vectors that prefix their length.
//!
//! dlib writes an integer as a control byte (the number of bytes that follow, bit 0x80 set for a
//! negative value) and then its magnitude, least significant byte first; a float as two such
//! integers, a mantissa and a power of two. The reader refills a buffer from any [`Read`] so that
//! the file passes through memory once, a buffer at a time (the caller hashes the same bytes).

use std::io::Read;

/// Why the bytes are not a dlib object; the caller adds the file's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at byte {offset}: {what}")]
pub struct FormatError {
    /// Where in the stream the bad value starts.
    pub offset: u64,
    /// What is wrong with it.
    pub what: String,
}

/// dlib's markers for the floats that have no mantissa (`float_details::is_inf` and on).
const IS_INF: i64 = 32000;
const IS_NINF: i64 = 32001;
const IS_NAN: i64 = 32002;

/// A cursor over a stream of dlib-serialised values.
pub struct DlibReader<R> {
    inner: R,
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    /// Bytes consumed before `buf[0]`.
    base: u64,
    /// The stream's error, kept to report it where it happened.
    io_error: Option<std::io::Error>,
}

impl<R: Read> DlibReader<R> {
    /// Reads `inner` through a 1 MiB buffer.
    pub fn new(inner: R) -> Self {
        DlibReader {
            inner,
            buf: vec![0u8; 1 << 20].into_boxed_slice(),
            pos: 0,
            end: 0,
            base: 0,
            io_error: None,
        }
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// The reader it wraps, with whatever it did not read.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// The I/O error that ended the stream early, if one did (reported as a truncation by the
    /// reading methods, which cannot tell the two apart).
    pub fn take_io_error(&mut self) -> Option<std::io::Error> {
        self.io_error.take()
    }

    fn fail<T>(&self, offset: u64, what: impl Into<String>) -> Result<T, FormatError> {
        Err(FormatError {
            offset,
            what: what.into(),
        })
    }

    /// Refills the buffer; false at the end of the stream.
    #[cold]
    fn refill(&mut self) -> bool {
        self.base += self.end as u64;
        self.pos = 0;
        self.end = 0;
        loop {
            match self.inner.read(&mut self.buf) {
                Ok(n) => {
                    self.end = n;
                    return n > 0;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.io_error = Some(e);
                    return false;
                }
            }
        }
    }

    #[inline]
    fn byte(&mut self) -> Result<u8, FormatError> {
        if self.pos == self.end && !self.refill() {
            return self.fail(self.offset(), "the file ends here (truncated?)");
        }
        let b = self.buf[self.pos];
        self.pos += 1;
        Ok(b)
    }

    /// The magnitude's `size` bytes, least significant first.
    #[inline]
    fn magnitude(&mut self, size: u8) -> Result<u64, FormatError> {
        let mut value = 0u64;
        for i in 0..size {
            value |= u64::from(self.byte()?) << (8 * i);
        }
        Ok(value)
    }

    /// A signed integer that fits in `bytes` bytes (dlib refuses wider ones).
    #[inline]
    pub fn signed(&mut self, bytes: u8) -> Result<i64, FormatError> {
        let at = self.offset();
        // Sixteen million of these make up a model: read straight from the buffer when the
        // widest integer fits in what is left of it.
        if let Some(&[control, ref rest @ ..]) = self.buf[..self.end].get(self.pos..self.pos + 9) {
            let size = control & 0x0F;
            if size != 0 && size <= bytes && size < 8 {
                // All eight bytes at once, masked to the integer's own: no loop to mispredict.
                let word = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes"));
                let magnitude = word & ((1u64 << (8 * size)) - 1);
                self.pos += 1 + usize::from(size);
                let value = magnitude as i64;
                return Ok(if control & 0x80 != 0 { -value } else { value });
            }
        }
        let control = self.byte()?;
        let size = control & 0x0F;
        if size == 0 || size > bytes {
            return self.fail(at, format!("bad integer control byte {control:#04x}"));
        }
        let magnitude = self.magnitude(size)?;
        // A magnitude of 2^63 is only valid negated; anything wider cannot come from dlib.
        let value = i64::try_from(magnitude).or_else(|_| {
            if control & 0x80 != 0 && magnitude == 1 << 63 {
                Ok(i64::MIN)
            } else {
                self.fail(at, "integer out of range")
            }
        })?;
        Ok(if control & 0x80 != 0 && value != i64::MIN {
            -value
        } else {
            value
        })
    }

    /// An unsigned integer (dlib's `unsigned long`, 8 bytes on the platforms we build for).
    #[inline]
    pub fn unsigned(&mut self) -> Result<u64, FormatError> {
        let at = self.offset();
        let control = self.byte()?;
        // dlib masks out the three reserved bits and keeps the sign bit, so a "negative"
        // unsigned value is an error like an oversized one.
        let size = control & 0x8F;
        if size == 0 || size > 8 {
            return self.fail(at, format!("bad unsigned control byte {control:#04x}"));
        }
        self.magnitude(size)
    }

    /// A length prefix, refused when it is beyond `max` (a damaged file must not make us
    /// allocate gigabytes).
    pub fn length(&mut self, max: usize, what: &str) -> Result<usize, FormatError> {
        let at = self.offset();
        let n = self.unsigned()?;
        match usize::try_from(n) {
            Ok(n) if n <= max => Ok(n),
            _ => self.fail(
                at,
                format!("{what} has {n} entries, more than the {max} allowed"),
            ),
        }
    }

    /// A `float` in dlib's binary encoding (mantissa, exponent).
    #[inline]
    pub fn float(&mut self) -> Result<f32, FormatError> {
        let at = self.offset();
        // dlib's older text encoding starts with an ASCII digit, sign or letter, which always
        // has one of the bits 0x70 set; a control byte never does. (Checked when the byte is
        // already buffered, which is all but one float in a megabyte: a file does not switch.)
        if self.pos < self.end && self.buf[self.pos] & 0x70 != 0 {
            return self.fail(
                at,
                "float in dlib's old text encoding, which is not supported",
            );
        }
        let mantissa = self.signed(8)?;
        let exponent = self.signed(2)?;
        Ok(match exponent {
            IS_INF => f32::INFINITY,
            IS_NINF => f32::NEG_INFINITY,
            IS_NAN => f32::NAN,
            // Exact: a float's mantissa has 24 bits, well inside f64's, and the power of two
            // only moves the exponent; the one rounding is the conversion to f32. (The power is
            // built from its bits: `powi` is a libm call and was a quarter of the load time.)
            e if (-1022..=1023).contains(&e) => {
                let power = f64::from_bits(((e + 1023) as u64) << 52);
                ((mantissa as f64) * power) as f32
            }
            e => ((mantissa as f64) * 2f64.powi(e.clamp(-2000, 2000) as i32)) as f32,
        })
    }

    /// A C `int` (4 bytes).
    pub fn int(&mut self) -> Result<i64, FormatError> {
        self.signed(4)
    }

    /// A `dlib::matrix<float,0,1>` (a column vector) of `expected` elements, appended to `to`.
    pub fn column_into(
        &mut self,
        expected: usize,
        what: &str,
        to: &mut Vec<f32>,
    ) -> Result<(), FormatError> {
        let at = self.offset();
        // Newer dlib writes the dimensions negated to mark its format; both read the same.
        let rows = self.signed(8)?.unsigned_abs();
        let cols = self.signed(8)?.unsigned_abs();
        if cols != 1 || rows != expected as u64 {
            return self.fail(
                at,
                format!("{what} is {rows}x{cols}, expected a column of {expected}"),
            );
        }
        for _ in 0..expected {
            to.push(self.float()?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(bytes: &[u8]) -> DlibReader<&[u8]> {
        DlibReader::new(bytes)
    }

    #[test]
    fn integers_by_hand() {
        // 1; -136 (0x88, sign bit); 0 (one zero byte); 0x0102 little-endian; u64 300.
        let bytes = [
            0x01, 0x01, 0x81, 0x88, 0x01, 0x00, 0x02, 0x02, 0x01, 0x02, 0x2c, 0x01,
        ];
        let mut r = reader(&bytes);
        assert_eq!(r.int().unwrap(), 1);
        assert_eq!(r.signed(8).unwrap(), -136);
        assert_eq!(r.int().unwrap(), 0);
        assert_eq!(r.int().unwrap(), 0x0102);
        assert_eq!(r.unsigned().unwrap(), 300);
        assert_eq!(r.offset(), bytes.len() as u64);
    }

    #[test]
    fn floats_by_hand() {
        // The first value of dlib's 68-point model: mantissa 0xf1384d (3 bytes), exponent -29.
        let bytes = [0x03, 0x4d, 0x38, 0xf1, 0x81, 0x1d];
        let v = reader(&bytes).float().unwrap();
        assert_eq!(v, 0xf1384d as f32 / (1u64 << 29) as f32);
        // -3 = -3 * 2^0; 0.5 = 1 * 2^-1; infinity marker 32000 = 0x7d00.
        let mut r = reader(&[
            0x81, 0x03, 0x01, 0x00, 0x01, 0x01, 0x81, 0x01, 0x01, 0x00, 0x02, 0x00, 0x7d,
        ]);
        assert_eq!(r.float().unwrap(), -3.0);
        assert_eq!(r.float().unwrap(), 0.5);
        assert_eq!(r.float().unwrap(), f32::INFINITY);
        // 1 * 2^-149, the smallest f32 (subnormal); 1 * 2^-1100 rounds to 0.
        let mut r = reader(&[0x01, 0x01, 0x81, 0x95, 0x01, 0x01, 0x82, 0x4c, 0x04]);
        assert_eq!(r.float().unwrap(), f32::from_bits(1));
        assert_eq!(r.float().unwrap(), 0.0);
    }

    #[test]
    fn damage_is_an_error_with_its_offset() {
        // Truncated inside a magnitude.
        let mut r = reader(&[0x01, 0x01, 0x03, 0x4d]);
        assert_eq!(r.int().unwrap(), 1);
        assert_eq!(r.signed(8).unwrap_err().offset, 4);
        // Size 0, and a size wider than the type.
        assert!(reader(&[0x00]).int().is_err());
        assert!(reader(&[0x05, 1, 2, 3, 4, 5]).int().is_err());
        // A "negative" length.
        assert!(reader(&[0x81, 0x05]).unsigned().is_err());
        // An absurd length is refused before anything is allocated.
        let err = reader(&[0x04, 0xff, 0xff, 0xff, 0x7f])
            .length(1000, "forest")
            .unwrap_err();
        assert!(err.what.contains("forest"), "{err}");
        // dlib's text floats start with ASCII.
        assert!(reader(b"0.25 ").float().is_err());
        // A matrix of the wrong shape.
        let err = reader(&[0x81, 0x02, 0x81, 0x02])
            .column_into(2, "initial shape", &mut Vec::new())
            .unwrap_err();
        assert!(err.what.contains("2x2"), "{err}");
    }
}
