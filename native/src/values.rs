//! Cell bytes -> the Python value the reference decoder returns (`commitlog/values.py`).
//!
//! The reference decodes a few native types directly (`int.from_bytes`, `bytes.decode`, `struct`,
//! `uuid.UUID`) and hands everything else to cassandra-driver's deserializers. Here those few are
//! decoded in Rust when the bytes are the ordinary case (a signed integer of at most 8 bytes, valid
//! UTF-8, a 16-byte UUID...); any other input, and every other type, goes to the very Python function
//! the reference calls, so values and exceptions are the reference's by construction.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDateTime, PyFloat, PyString};

use crate::objects::SlotClass;

/// Which of the reference's direct decoders a column uses (`values._FAST`), or none of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    /// `int.from_bytes(data, "big", signed=True)`: int, bigint, smallint, tinyint, varint.
    Signed,
    Text,
    Ascii,
    Boolean,
    Double,
    Float,
    Uuid,
    Blob,
    /// `timestamp_from_millis`: a naive UTC datetime for years 1-9999 (the reference's `Timestamp` beyond).
    Timestamp,
    /// Any other decoder: called as it is.
    Python,
}

impl ValueKind {
    /// The kind named by the Python side's decoder table (`fast.py`).
    pub fn from_name(name: &str) -> Self {
        match name {
            "signed" => Self::Signed,
            "text" => Self::Text,
            "ascii" => Self::Ascii,
            "boolean" => Self::Boolean,
            "double" => Self::Double,
            "float" => Self::Float,
            "uuid" => Self::Uuid,
            "blob" => Self::Blob,
            "timestamp" => Self::Timestamp,
            _ => Self::Python,
        }
    }
}

/// One value decoder: its kind, the reference's Python function, and the value of empty bytes.
pub struct ValueCodec {
    pub kind: ValueKind,
    pub function: Py<PyAny>,
    pub empty: Py<PyAny>,
}

/// How `uuid.UUID` instances are made: the class and `SafeUUID.unknown` (what `UUID(bytes=...)` sets).
pub struct UuidFactory {
    pub class: SlotClass,
    pub unknown: Py<PyAny>,
}

impl UuidFactory {
    pub fn build<'py>(&self, py: Python<'py>, bytes: [u8; 16]) -> PyResult<Bound<'py, PyAny>> {
        let int = u128::from_be_bytes(bytes).into_pyobject(py)?.into_any();
        self.class.build(py, [&int, self.unknown.bind(py)])
    }
}

impl ValueCodec {
    /// `function(raw)`, or its Rust equivalent for the ordinary inputs of the direct decoders.
    pub fn decode<'py>(&self, py: Python<'py>, uuid: &UuidFactory, raw: &[u8]) -> PyResult<Bound<'py, PyAny>> {
        let fast = match self.kind {
            ValueKind::Signed if raw.len() <= 8 => Some(signed(raw).into_pyobject(py)?.into_any()),
            ValueKind::Text => std::str::from_utf8(raw).ok().map(|s| PyString::new(py, s).into_any()),
            ValueKind::Ascii if raw.is_ascii() => {
                std::str::from_utf8(raw).ok().map(|s| PyString::new(py, s).into_any())
            }
            ValueKind::Boolean if !raw.is_empty() => Some(PyBool::new(py, raw[0] != 0).to_owned().into_any()),
            ValueKind::Double => {
                <[u8; 8]>::try_from(raw).ok().map(|b| PyFloat::new(py, f64::from_be_bytes(b)).into_any())
            }
            ValueKind::Float => {
                <[u8; 4]>::try_from(raw).ok().map(|b| PyFloat::new(py, f64::from(f32::from_be_bytes(b))).into_any())
            }
            ValueKind::Uuid => match <[u8; 16]>::try_from(raw) {
                Ok(bytes) => Some(uuid.build(py, bytes)?),
                Err(_) => None,
            },
            ValueKind::Blob => Some(PyBytes::new(py, raw).into_any()),
            ValueKind::Timestamp => match <[u8; 8]>::try_from(raw) {
                Ok(bytes) => datetime(py, i64::from_be_bytes(bytes))?,
                Err(_) => None,
            },
            _ => None,
        };
        match fast {
            Some(value) => Ok(value),
            None => self.function.bind(py).call1((PyBytes::new(py, raw),)),
        }
    }
}

/// Milliseconds since 1970 of 0001-01-01T00:00:00.000 and 9999-12-31T23:59:59.999: `datetime`'s range.
const DATETIME_MIN_MS: i64 = -62_135_596_800_000;
const DATETIME_MAX_MS: i64 = 253_402_300_799_999;

/// The naive UTC datetime `milliseconds` after 1970 (`EPOCH + timedelta(milliseconds=...)`), or
/// None outside `datetime`'s range (the reference makes a `Timestamp` there).
fn datetime(py: Python<'_>, milliseconds: i64) -> PyResult<Option<Bound<'_, PyAny>>> {
    if !(DATETIME_MIN_MS..=DATETIME_MAX_MS).contains(&milliseconds) {
        return Ok(None);
    }
    let (days, in_day) = (milliseconds.div_euclid(86_400_000), milliseconds.rem_euclid(86_400_000));
    let (year, month, day) = civil_from_days(days);
    let (hour, minute) = (in_day / 3_600_000, in_day / 60_000 % 60);
    let (second, millisecond) = (in_day / 1000 % 60, in_day % 1000);
    // The casts are exact: the range check above bounds every field.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let value = PyDateTime::new(
        py,
        year as i32,
        month as u8,
        day as u8,
        hour as u8,
        minute as u8,
        second as u8,
        (millisecond * 1000) as u32,
        None,
    )?;
    Ok(Some(value.into_any()))
}

/// The proleptic Gregorian (year, month, day) of a day count since 1970-01-01 (H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A big-endian two's complement integer of at most 8 bytes (0 for none, like `int.from_bytes`).
pub fn signed(raw: &[u8]) -> i64 {
    match raw.split_first() {
        None => 0,
        Some((&first, rest)) => rest.iter().fold(i64::from(first as i8), |value, &byte| (value << 8) | i64::from(byte)),
    }
}

#[cfg(test)]
mod tests {
    use super::{civil_from_days, signed};

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(-719_162), (1, 1, 1));
        assert_eq!(civil_from_days(2_932_896), (9999, 12, 31));
    }

    #[test]
    fn signed_integers() {
        assert_eq!(signed(&[]), 0);
        assert_eq!(signed(&[0xFF]), -1);
        assert_eq!(signed(&[0x80, 0x00]), -32768);
        assert_eq!(signed(&[0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]), i64::MAX);
        assert_eq!(signed(&[0x80, 0, 0, 0, 0, 0, 0, 0]), i64::MIN);
    }
}
