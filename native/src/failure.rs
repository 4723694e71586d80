//! Why a mutation did not decode, turned into the reference decoder's exceptions at one place.
//!
//! The reference (`commitlog/mutation.py`) raises `DecodeError` for a body that does not match the
//! schema, lets `SchemaError` (unknown table or column) through, and turns the Python errors that
//! malformed bytes cause (`IndexError`, `ValueError`, `struct.error`, `OverflowError`,
//! `UnicodeDecodeError`) into `DecodeError`. [`Failure::into_pyerr`] does the same.

use pyo3::prelude::*;
use pyo3::types::PyType;

/// A decoding failure before it becomes a Python exception.
#[derive(Debug)]
pub enum Failure {
    /// The body ended inside a field.
    Truncated,
    /// The bytes are well-formed but impossible (the message says why).
    Invalid(String),
    /// Raised by Python code the decoder called (schema look-ups, value decoders).
    Python(PyErr),
}

impl From<PyErr> for Failure {
    fn from(error: PyErr) -> Self {
        Self::Python(error)
    }
}

/// The exception classes the reference decoder raises.
pub struct ErrorClasses {
    pub decode_error: Py<PyType>,
    pub schema_error: Py<PyType>,
    /// Exceptions of malformed bytes that the reference turns into `DecodeError`.
    pub translated: Py<PyAny>,
}

impl Failure {
    /// The exception the reference raises for this failure at byte `pos` of the body.
    pub fn into_pyerr(self, py: Python<'_>, classes: &ErrorClasses, pos: usize) -> PyErr {
        let decode_error = classes.decode_error.bind(py);
        match self {
            Self::Truncated => PyErr::from_type(
                decode_error.clone(),
                format!("malformed mutation at byte {pos}: a field runs past the end of the body"),
            ),
            Self::Invalid(message) => PyErr::from_type(decode_error.clone(), message),
            Self::Python(error) => {
                let passes =
                    error.is_instance(py, decode_error) || error.is_instance(py, classes.schema_error.bind(py));
                if passes || !error.is_instance(py, classes.translated.bind(py)) {
                    return error;
                }
                let wrapped = PyErr::from_type(
                    decode_error.clone(),
                    format!(
                        "malformed mutation at byte {pos}: {}",
                        error.value(py).repr().map_or_else(|_| "?".into(), |r| r.to_string())
                    ),
                );
                wrapped.set_cause(py, Some(error));
                wrapped
            }
        }
    }
}
