//! Cell bytes -> the Python value the reference decoder returns (`commitlog/values.py`).
//!
//! The reference decodes a few native types directly (`int.from_bytes`, `bytes.decode`, `struct`,
//! `uuid.UUID`) and hands everything else to cassandra-driver's deserializers. Here those few are
//! decoded in Rust when the bytes are the ordinary case (a signed integer of at most 8 bytes, valid
//! UTF-8, a 16-byte UUID...); any other input, and every other type, goes to the very Python function
//! the reference calls, so values and exceptions are the reference's by construction.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyString};

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
            _ => None,
        };
        match fast {
            Some(value) => Ok(value),
            None => self.function.bind(py).call1((PyBytes::new(py, raw),)),
        }
    }
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
    use super::signed;

    #[test]
    fn signed_integers() {
        assert_eq!(signed(&[]), 0);
        assert_eq!(signed(&[0xFF]), -1);
        assert_eq!(signed(&[0x80, 0x00]), -32768);
        assert_eq!(signed(&[0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]), i64::MAX);
        assert_eq!(signed(&[0x80, 0, 0, 0, 0, 0, 0, 0]), i64::MIN);
    }
}
