//! A read position in a mutation body, and Cassandra's vints (`utils/vint/VIntCoding.java`).

use crate::failure::Failure;

/// Bytes of a mutation body and the position of the next unread one.
pub struct Cursor<'a> {
    pub buf: &'a [u8],
    pub pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub fn at_end(&self) -> bool {
        self.pos == self.buf.len()
    }

    pub fn byte(&mut self) -> Result<u8, Failure> {
        let value = *self.buf.get(self.pos).ok_or(Failure::Truncated)?;
        self.pos += 1;
        Ok(value)
    }

    pub fn u16(&mut self) -> Result<u16, Failure> {
        let bytes = self.take(2)?;
        Ok(u16::from_be_bytes([bytes[0], bytes[1]]))
    }

    pub fn take(&mut self, length: usize) -> Result<&'a [u8], Failure> {
        let end = self.pos.checked_add(length).filter(|&end| end <= self.buf.len()).ok_or(Failure::Truncated)?;
        let slice = &self.buf[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    /// An unsigned vint: the count of leading 1-bits of the first byte is the count of extra bytes.
    pub fn uvint(&mut self) -> Result<u64, Failure> {
        let first = self.byte()?;
        if first < 0x80 {
            return Ok(u64::from(first));
        }
        let extra = first.leading_ones() as usize;
        let rest = self.take(extra)?;
        // The first byte's bits after its length prefix; with 7 or 8 extra bytes there are none
        // (the mask is shifted as a u64: as a u8, a shift by 8 or 9 would overflow).
        let mut value = u64::from(first) & (0xFF_u64 >> (extra + 1));
        for &byte in rest {
            value = (value << 8) | u64::from(byte);
        }
        Ok(value)
    }

    /// `readUnsignedVInt32`: Java's `checkedCast` of the vint read as a long.
    pub fn int32(&mut self) -> Result<i32, Failure> {
        let raw = self.uvint()? as i64;
        i32::try_from(raw).map_err(|_| Failure::Invalid(format!("vint {raw} does not fit in a 32-bit int")))
    }

    /// A value of a type written with a fixed width (`fixed >= 0`) or with a vint length.
    pub fn value(&mut self, fixed: i64) -> Result<&'a [u8], Failure> {
        let length = if fixed >= 0 { fixed as u64 } else { self.uvint()? };
        self.take(usize::try_from(length).map_err(|_| Failure::Truncated)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_byte_and_long_vints() {
        let mut cursor = Cursor::new(&[0x05, 0x81, 0x00, 0xFF, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(cursor.uvint().unwrap(), 5);
        assert_eq!(cursor.uvint().unwrap(), 0x100);
        assert_eq!(cursor.uvint().unwrap(), 0x0102_0304_0506_0708);
        assert!(cursor.at_end());
    }

    #[test]
    fn eight_byte_vints_have_no_value_bits_in_the_first_byte() {
        // 0xFE: seven extra bytes; the first byte's last bit is the prefix's terminating 0.
        assert_eq!(Cursor::new(&[0xFE, 0, 0, 0, 0, 0, 0, 0]).uvint().unwrap(), 0);
        assert_eq!(Cursor::new(&[0xFE, 0, 0, 0, 0, 0, 0, 9]).uvint().unwrap(), 9);
        assert_eq!(Cursor::new(&[0xFE, 0x80, 0, 0, 0, 0, 0, 0]).uvint().unwrap(), 1 << 55);
    }

    #[test]
    fn negative_int_takes_nine_bytes() {
        let mut bytes = vec![0xFF];
        bytes.extend_from_slice(&(-2i64).to_be_bytes());
        assert_eq!(Cursor::new(&bytes).int32().unwrap(), -2);
    }

    #[test]
    fn truncated_vint_fails() {
        assert!(matches!(Cursor::new(&[0xC0, 0x01]).uvint(), Err(Failure::Truncated)));
    }
}
