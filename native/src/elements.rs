//! A set's or map's change -> the two stored fields of a multi-cell column: the compiled twin of
//! `collection_fields` (`pipeline_runtime/sinks/postgres/records.py`) for the common element types.
//!
//! The stored state is the canonical JSON object `{element key: [value text, writetime, expiry]}`
//! (`pipeline_runtime.sinks.changes.collection_elements`, written by `canonical.dumps`), plus the
//! change's whole-column deletion time. Element keys and values of text, ascii and the fixed-size
//! integer types are written here, byte for byte as Python's `json` module writes them
//! (`ensure_ascii=False`, compact separators). Anything else goes to the reference function
//! itself: another element type, a varint beyond 64 bits, an empty value, a U+0000 (which the
//! reference refuses by name), an element key seen twice in one change (the reference keeps the
//! one that wins), or an object of an unexpected class.

use std::collections::HashSet;
use std::fmt::Write as _;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyInt, PyString, PyTuple, PyType};

use crate::slots::Field;

/// How an element key or a map value is written.
#[derive(Clone, Copy)]
enum Scalar {
    /// text, ascii: a JSON string.
    Text,
    /// int, bigint, smallint, tinyint: a JSON number.
    Integer,
}

impl Scalar {
    fn from_name(name: &str) -> PyResult<Self> {
        match name {
            "text" => Ok(Self::Text),
            "integer" => Ok(Self::Integer),
            other => Err(pyo3::exceptions::PyValueError::new_err(format!("unknown element scalar {other:?}"))),
        }
    }

    /// The canonical JSON text of `value`, or None when the reference must write it.
    fn canonical(self, value: &Bound<'_, PyAny>) -> Option<String> {
        match self {
            Self::Text => {
                let text = value.cast_exact::<PyString>().ok()?.to_str().ok()?;
                if text.contains('\0') {
                    return None;
                }
                let mut out = String::with_capacity(text.len() + 2);
                json_string(&mut out, text);
                Some(out)
            }
            Self::Integer => {
                let number: i64 = value.cast_exact::<PyInt>().ok()?.extract().ok()?;
                Some(number.to_string())
            }
        }
    }
}

/// `text` as Python's `json` writes a string with `ensure_ascii=False`: quotes, backslashes and
/// control characters escaped, everything else as it is.
fn json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0C}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The stored fields of one set or map column, called as `fields(change)` like the reference.
#[pyclass(module = "headrace_native", frozen)]
pub struct ElementFields {
    /// The element key's scalar; a map's value scalar (None for a set, whose values are `"true"`).
    key: Scalar,
    value: Option<Scalar>,
    /// `collection_fields(column, where, change)` with its first two arguments bound.
    reference: Py<PyAny>,
    collection: Field,
    collection_deletion: Field,
    deletion_timestamp: Field,
    element_class: Py<PyType>,
    path: Field,
    element_value: Field,
    timestamp: Field,
    ttl: Field,
    local_deletion_time: Field,
    deleted: Field,
}

#[pymethods]
impl ElementFields {
    /// `classes`: `collection_change`, `element_cell` and `deletion`; `key`/`value`: `text` or
    /// `integer` (`value` None for a set); `reference`: the reference's function of one change.
    #[new]
    fn new(classes: &Bound<'_, PyDict>, key: &str, value: Option<&str>, reference: Py<PyAny>) -> PyResult<Self> {
        let class = |name: &str| -> PyResult<Bound<'_, PyType>> {
            Ok(classes
                .get_item(name)?
                .ok_or_else(|| pyo3::exceptions::PyKeyError::new_err(name.to_owned()))?
                .cast_into::<PyType>()?)
        };
        let (collection, element, deletion) = (class("collection_change")?, class("element_cell")?, class("deletion")?);
        Ok(Self {
            key: Scalar::from_name(key)?,
            value: value.map(Scalar::from_name).transpose()?,
            reference,
            collection: Field::new(&collection, "elements")?,
            collection_deletion: Field::new(&collection, "deletion")?,
            deletion_timestamp: Field::new(&deletion, "timestamp")?,
            path: Field::new(&element, "path")?,
            element_value: Field::new(&element, "value")?,
            timestamp: Field::new(&element, "timestamp")?,
            ttl: Field::new(&element, "ttl")?,
            local_deletion_time: Field::new(&element, "local_deletion_time")?,
            deleted: Field::new(&element, "deleted")?,
            element_class: element.unbind(),
        })
    }

    /// `(state as JSON text or None, deletion time or None)`, or None where the general path
    /// decides: exactly what the reference returns for `change`.
    fn __call__<'py>(&self, change: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        match self.native(change)? {
            Some(fields) => Ok(fields),
            None => self.reference.bind(change.py()).call1((change,)),
        }
    }
}

impl ElementFields {
    fn native<'py>(&self, change: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let py = change.py();
        if !self.collection.owns(change) {
            return Ok(None);
        }
        let deletion = self.collection_deletion.get(change)?;
        let deleted =
            if deletion.is_none() { None } else { Some(self.deletion_timestamp.get(&deletion)?.extract::<i64>()?) };
        let elements = self.collection.get(change)?;
        let Ok(elements) = elements.cast::<PyTuple>() else { return Ok(None) };
        if elements.is_empty() {
            return Ok(Some((py.None(), deleted).into_pyobject(py)?.into_any()));
        }
        let mut out = String::from("{");
        let mut seen = HashSet::with_capacity(elements.len());
        for (index, element) in elements.iter().enumerate() {
            if !element.get_type().is(self.element_class.bind(py)) {
                return Ok(None);
            }
            let Some(key) = self.key.canonical(&self.path.get(&element)?) else { return Ok(None) };
            let is_deleted = self.deleted.get(&element)?.is_truthy()?;
            let value = if is_deleted {
                None
            } else {
                match self.value {
                    None => Some("true".to_owned()),
                    Some(scalar) => match scalar.canonical(&self.element_value.get(&element)?) {
                        Some(text) => Some(text),
                        None => return Ok(None),
                    },
                }
            };
            let timestamp: i64 = self.timestamp.get(&element)?.extract()?;
            let expires: Option<i64> = if is_deleted || self.ttl.get(&element)?.is_none() {
                None
            } else {
                self.local_deletion_time.get(&element)?.extract()?
            };
            if index > 0 {
                out.push(',');
            }
            json_string(&mut out, &key);
            out.push_str(":[");
            match &value {
                Some(text) => json_string(&mut out, text),
                None => out.push_str("null"),
            }
            let _ = write!(out, ",{timestamp},");
            match expires {
                Some(expires) => {
                    let _ = write!(out, "{expires}");
                }
                None => out.push_str("null"),
            }
            out.push(']');
            if !seen.insert(key) {
                return Ok(None); // the same element twice: the reference keeps the one that wins
            }
        }
        out.push('}');
        Ok(Some((PyString::new(py, &out), deleted).into_pyobject(py)?.into_any()))
    }
}
