//! Rust copies of the reference's per-table plans (`commitlog/plan.py`), made once per plan object.
//!
//! The Python `TablePlan` stays the source of truth: the schema registry decides which plan a table
//! id has (refreshing `system_schema` when needed), and column headers the decoder has not seen yet
//! are resolved by the plan's own `read_columns` (which refreshes on an unknown column). What is
//! copied here is only what the cell loop reads, so it never has to touch a Python attribute.

use std::collections::HashMap;
use std::sync::Arc;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString, PyTuple};

use crate::failure::Failure;
use crate::values::{ValueCodec, ValueKind};

/// Which direct decoder each reference function is (`fast.py` builds the table).
pub struct DecoderKinds {
    pub by_function: Py<PyDict>,
}

impl DecoderKinds {
    pub fn codec(&self, py: Python<'_>, function: &Bound<'_, PyAny>, empty: &Bound<'_, PyAny>) -> PyResult<ValueCodec> {
        let kind = match self.by_function.bind(py).get_item(function)? {
            Some(name) => ValueKind::from_name(&name.extract::<String>()?),
            None => ValueKind::Python,
        };
        Ok(ValueCodec { kind, function: function.clone().unbind(), empty: empty.clone().unbind() })
    }
}

/// A partition-key or clustering column (`KeyPart`).
pub struct KeyPartSpec {
    pub name: Py<PyString>,
    pub fixed: i64,
    pub codec: ValueCodec,
}

/// How to read the cells of a multi-cell column (`ComplexCodec`).
pub enum ComplexSpec {
    /// A non-frozen UDT: the cell path is a field index.
    Fields(Vec<FieldSpec>),
    /// A list, set or map: the path decodes to the element's identity; sets have no value decoder.
    Elements { path: ValueCodec, value: Option<ValueCodec> },
}

/// One field of a non-frozen UDT.
pub struct FieldSpec {
    pub name: Py<PyAny>,
    pub codec: ValueCodec,
}

/// One column of a columns header (`ColumnPlan`).
pub struct ColumnSpec {
    pub name: Py<PyString>,
    pub fixed: i64,
    pub dropped: bool,
    /// A live column dropped before and added again: its drop time (µs). Cells and complex deletions
    /// written at or before it are ignored, as Cassandra does (`DeserializationHelper.isDropped`).
    pub dropped_at: Option<i64>,
    /// The simple column's value decoder, or the complex column's cell decoders.
    pub kind: ColumnKind,
}

pub enum ColumnKind {
    Simple(ValueCodec),
    Complex(ComplexSpec),
}

/// Everything the decoder needs about one table (`TablePlan`).
pub struct TableSpec {
    pub keyspace: Py<PyString>,
    pub table: Py<PyString>,
    pub emit: bool,
    /// Reported in `DecodeStats.skipped` when the table is selected but not emitted.
    pub skip_reason: Option<Py<PyAny>>,
    pub partition_key: Vec<KeyPartSpec>,
    pub clustering: Vec<KeyPartSpec>,
    /// Columns headers seen so far, by their serialized bytes.
    headers: HashMap<Box<[u8]>, Arc<[ColumnSpec]>>,
}

impl TableSpec {
    pub fn from_plan(plan: &Bound<'_, PyAny>, kinds: &DecoderKinds) -> PyResult<Self> {
        let py = plan.py();
        let skip_reason = plan.getattr(intern!(py, "skip_reason"))?;
        let selected: bool = plan.getattr(intern!(py, "selected"))?.extract()?;
        let emit: bool = plan.getattr(intern!(py, "emit"))?.extract()?;
        Ok(Self {
            keyspace: plan.getattr(intern!(py, "keyspace"))?.cast_into::<PyString>()?.unbind(),
            table: plan.getattr(intern!(py, "table"))?.cast_into::<PyString>()?.unbind(),
            emit,
            skip_reason: (selected && !emit && !skip_reason.is_none()).then(|| skip_reason.unbind()),
            partition_key: key_parts(&plan.getattr(intern!(py, "partition_key"))?, kinds)?,
            clustering: key_parts(&plan.getattr(intern!(py, "clustering"))?, kinds)?,
            headers: HashMap::new(),
        })
    }

    /// The columns header at `cursor.pos` of `body`; unseen headers are resolved by the plan itself.
    pub fn columns(
        &mut self,
        plan: &Bound<'_, PyAny>,
        body: &Bound<'_, PyBytes>,
        pos: &mut usize,
        kinds: &DecoderKinds,
    ) -> Result<Arc<[ColumnSpec]>, Failure> {
        let buf = body.as_bytes();
        if let Some(end) = header_end(buf, *pos)
            && let Some(columns) = self.headers.get(&buf[*pos..end])
        {
            *pos = end;
            return Ok(columns.clone());
        }
        let py = plan.py();
        let (plans, end): (Bound<'_, PyTuple>, usize) =
            plan.call_method1(intern!(py, "read_columns"), (body, *pos))?.extract()?;
        let columns: Arc<[ColumnSpec]> =
            plans.iter().map(|column| column_spec(&column, kinds)).collect::<PyResult<Vec<_>>>()?.into();
        if self.headers.len() >= 4096 {
            self.headers.clear();
        }
        self.headers.insert(buf[*pos..end].into(), columns.clone());
        *pos = end;
        Ok(columns)
    }
}

/// Where a columns header starting at `pos` ends, if it is complete (count, then vint-length names).
fn header_end(buf: &[u8], pos: usize) -> Option<usize> {
    let mut cursor = crate::cursor::Cursor { buf, pos };
    let count = cursor.uvint().ok()?;
    for _ in 0..count {
        let length = cursor.uvint().ok()?;
        cursor.take(usize::try_from(length).ok()?).ok()?;
    }
    Some(cursor.pos)
}

fn key_parts(parts: &Bound<'_, PyAny>, kinds: &DecoderKinds) -> PyResult<Vec<KeyPartSpec>> {
    let py = parts.py();
    parts
        .try_iter()?
        .map(|part| {
            let part = part?;
            Ok(KeyPartSpec {
                name: part.getattr(intern!(py, "name"))?.cast_into::<PyString>()?.unbind(),
                fixed: part.getattr(intern!(py, "fixed"))?.extract()?,
                codec: kinds.codec(py, &part.getattr(intern!(py, "decode"))?, &part.getattr(intern!(py, "empty"))?)?,
            })
        })
        .collect()
}

fn column_spec(column: &Bound<'_, PyAny>, kinds: &DecoderKinds) -> PyResult<ColumnSpec> {
    let py = column.py();
    let complex: bool = column.getattr(intern!(py, "complex"))?.extract()?;
    let kind = if complex {
        ColumnKind::Complex(complex_spec(&column.getattr(intern!(py, "codec"))?, kinds)?)
    } else {
        ColumnKind::Simple(kinds.codec(
            py,
            &column.getattr(intern!(py, "decode"))?,
            &column.getattr(intern!(py, "empty"))?,
        )?)
    };
    Ok(ColumnSpec {
        name: column.getattr(intern!(py, "name"))?.cast_into::<PyString>()?.unbind(),
        fixed: column.getattr(intern!(py, "fixed"))?.extract()?,
        dropped: column.getattr(intern!(py, "dropped"))?.extract()?,
        dropped_at: column.getattr(intern!(py, "dropped_at"))?.extract()?,
        kind,
    })
}

fn complex_spec(codec: &Bound<'_, PyAny>, kinds: &DecoderKinds) -> PyResult<ComplexSpec> {
    let py = codec.py();
    let names = codec.getattr(intern!(py, "field_names"))?.cast_into::<PyTuple>()?;
    if !names.is_empty() {
        let decoders = codec.getattr(intern!(py, "field_values"))?.cast_into::<PyTuple>()?;
        let empties = codec.getattr(intern!(py, "field_empties"))?.cast_into::<PyTuple>()?;
        let fields = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                Ok(FieldSpec {
                    name: name.unbind(),
                    codec: kinds.codec(py, &decoders.get_item(i)?, &empties.get_item(i)?)?,
                })
            })
            .collect::<PyResult<Vec<_>>>()?;
        return Ok(ComplexSpec::Fields(fields));
    }
    let path = kinds.codec(py, &codec.getattr(intern!(py, "path"))?, &codec.getattr(intern!(py, "path_empty"))?)?;
    let value = codec.getattr(intern!(py, "value"))?;
    let value = if value.is_none() {
        None
    } else {
        Some(kinds.codec(py, &value, &codec.getattr(intern!(py, "value_empty"))?)?)
    };
    Ok(ComplexSpec::Elements { path, value })
}
