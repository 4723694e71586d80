//! Plain-upsert events -> one ClickHouse Native block for the sink's staging table.
//!
//! The ClickHouse sink stages a batch's deltas in a temporary table, reads the newest stored
//! states of their keys, and merges the two in `chmerge.rs`. This encoder writes the deltas: per
//! row the key, then per single-cell column its value, writetime and expiry, then the liveness
//! and the delta's own `_version`, in `flat.read_columns` order without `_del_ts`. Events
//! are read by the walk of `upserts.rs` (the flat path's rules), values are encoded as
//! clickhouse-connect encodes what `typemap.ch_encoder` returns; values of another Python type go
//! through that encoder first.

use pyo3::exceptions::{PyOverflowError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDate, PyDateAccess, PyDateTime, PyDict, PyFloat, PyInt, PyList, PyString};

use crate::upserts::{Classes, Row, RowWriter, Shape, micros_since_year_one, ordinal, store_value, walk};

/// Days from 0001-01-01 (day 1) to 1970-01-01.
const UNIX_EPOCH_ORDINAL: i64 = 719_163;
/// Microseconds from 0001-01-01 to 1970-01-01.
const UNIX_EPOCH_MICROS: i64 = (UNIX_EPOCH_ORDINAL - 1) * 86_400_000_000;

/// A ClickHouse column type the stage uses (the types `typemap.ch_type` maps to).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `String` from `str` or `bytes`.
    String,
    /// `String` holding canonical JSON: always the encoder's text.
    Json,
    Int8,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Bool,
    Date32,
    /// `DateTime64(3, 'UTC')`.
    DateTime64,
    Uuid,
    /// `UInt256`: the delta's own `_version` (written directly, never from a Python value).
    UInt256,
    Array(Element),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Element {
    Int32,
    Int64,
    Float32,
    Float64,
}

impl Element {
    fn kind(self) -> Kind {
        match self {
            Self::Int32 => Kind::Int32,
            Self::Int64 => Kind::Int64,
            Self::Float32 => Kind::Float32,
            Self::Float64 => Kind::Float64,
        }
    }
}

impl Kind {
    fn from_name(name: &str) -> PyResult<Self> {
        let element = |name: &str| match name {
            "Int32" => Some(Element::Int32),
            "Int64" => Some(Element::Int64),
            "Float32" => Some(Element::Float32),
            "Float64" => Some(Element::Float64),
            _ => None,
        };
        Ok(match name {
            "String" => Self::String,
            "JSON" => Self::Json,
            "Int8" => Self::Int8,
            "Int16" => Self::Int16,
            "Int32" => Self::Int32,
            "Int64" => Self::Int64,
            "Float32" => Self::Float32,
            "Float64" => Self::Float64,
            "Bool" => Self::Bool,
            "Date32" => Self::Date32,
            "DateTime64(3, 'UTC')" => Self::DateTime64,
            "UUID" => Self::Uuid,
            _ => match name.strip_prefix("Array(").and_then(|n| n.strip_suffix(')')).and_then(element) {
                Some(element) => Self::Array(element),
                None => return Err(PyValueError::new_err(format!("no Native encoding for ClickHouse type {name:?}"))),
            },
        })
    }

    /// Bytes of one value of a fixed-width kind (what a NULL occupies in a Nullable column).
    fn width(self) -> Option<usize> {
        match self {
            Self::Int8 | Self::Bool => Some(1),
            Self::Int16 => Some(2),
            Self::Int32 | Self::Float32 | Self::Date32 => Some(4),
            Self::Int64 | Self::Float64 | Self::DateTime64 => Some(8),
            Self::Uuid => Some(16),
            Self::UInt256 => Some(32),
            Self::String | Self::Json | Self::Array(_) => None,
        }
    }

    fn type_name(self) -> String {
        match self {
            Self::String | Self::Json => "String".into(),
            Self::Array(element) => format!("Array({})", element.kind().type_name()),
            Self::DateTime64 => "DateTime64(3, 'UTC')".into(),
            Self::Uuid => "UUID".into(),
            Self::UInt256 => "UInt256".into(),
            other => format!("{other:?}"),
        }
    }
}

/// One stage column being filled: null map (Nullable columns), values, array offsets.
struct Column {
    name: String,
    kind: Kind,
    nullable: bool,
    nulls: Vec<u8>,
    data: Vec<u8>,
    offsets: Vec<u64>,
    items: u64,
}

impl Column {
    /// An empty column with room for `rows` values (variable-width ones guessed at 16 bytes), so a
    /// batch fills it without reallocating.
    fn new(name: String, kind: Kind, nullable: bool, rows: usize) -> Self {
        let data = Vec::with_capacity(rows * kind.width().unwrap_or(16));
        let nulls = if nullable { Vec::with_capacity(rows) } else { Vec::new() };
        let offsets = if matches!(kind, Kind::Array(_)) { Vec::with_capacity(rows) } else { Vec::new() };
        Self { name, kind, nullable, nulls, data, offsets, items: 0 }
    }

    fn null(&mut self) {
        match self.kind {
            Kind::Array(_) => self.offsets.push(self.items), // arrays are not Nullable: null is []
            kind => {
                self.nulls.push(1);
                match kind.width() {
                    Some(width) => self.data.extend(std::iter::repeat_n(0u8, width)),
                    None => self.data.push(0), // the empty string
                }
            }
        }
    }

    fn int64(&mut self, value: Option<i64>) {
        match value {
            Some(value) => {
                self.nulls.push(0);
                self.data.extend_from_slice(&value.to_le_bytes());
            }
            None => self.null(),
        }
    }

    fn type_name(&self) -> String {
        let base = self.kind.type_name();
        if self.nullable { format!("Nullable({base})") } else { base }
    }

    fn write_block(&self, out: &mut Vec<u8>) {
        string(out, self.name.as_bytes());
        string(out, self.type_name().as_bytes());
        if self.nullable {
            out.extend_from_slice(&self.nulls);
        }
        for offset in &self.offsets {
            out.extend_from_slice(&offset.to_le_bytes());
        }
        out.extend_from_slice(&self.data);
    }
}

/// `(name, ClickHouse type, encoder)`: a key or single-cell column.
type Spec = (String, String, Py<PyAny>);

struct Field {
    name: String,
    kind: Kind,
    encoder: Py<PyAny>,
}

/// Writes one table's plain-upsert batches as a Native block of the stage columns.
#[pyclass(module = "headrace_native", frozen)]
pub struct ChStageEncoder {
    shape: Shape,
    keys: Vec<Field>,
    columns: Vec<Field>,
}

#[pymethods]
impl ChStageEncoder {
    /// `classes`: `upsert` (Op.UPSERT), `cell`, `uuid`; specs are `(name, type, encoder)` with the
    /// non-nullable ClickHouse type (`JSON` for canonical-JSON strings); `general`: names that force
    /// the general path.
    #[new]
    fn new(
        classes: &Bound<'_, PyDict>,
        partition: Vec<Spec>,
        clustering: Vec<Spec>,
        columns: Vec<Spec>,
        general: Vec<String>,
    ) -> PyResult<Self> {
        let fields = |specs: Vec<Spec>| -> PyResult<Vec<Field>> {
            specs
                .into_iter()
                .map(|(name, kind, encoder)| Ok(Field { name, kind: Kind::from_name(&kind)?, encoder }))
                .collect()
        };
        let names = |specs: &[Spec]| specs.iter().map(|s| s.0.clone()).collect::<Vec<_>>();
        let stored: Vec<(String, bool)> = columns.iter().map(|s| (s.0.clone(), true)).collect();
        let shape =
            Shape::new(Classes::new(classes)?, names(&partition), names(&clustering), &stored, general, Vec::new())?;
        let keys = fields(partition)?.into_iter().chain(fields(clustering)?).collect();
        Ok(Self { shape, keys, columns: fields(columns)? })
    }

    /// The stage's column names, in block order.
    fn column_names(&self) -> Vec<String> {
        self.stage_columns(0).into_iter().map(|c| c.name).collect()
    }

    /// `(block, rows)` for a batch of plain upserts of distinct rows, or None when the batch needs
    /// the general path (`FlatRows.shape` returns None for exactly the same batches).
    fn encode<'py>(&self, events: &Bound<'py, PyList>) -> PyResult<Option<(Bound<'py, PyBytes>, usize)>> {
        let py = events.py();
        let mut writer = StageWriter { encoder: self, columns: self.stage_columns(events.len()), rows: 0 };
        if !walk(&self.shape, events, &mut writer)? {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(writer.columns.iter().map(|c| c.data.len() + c.nulls.len() + 64).sum());
        varint(&mut out, writer.columns.len() as u64);
        varint(&mut out, writer.rows as u64);
        for column in &writer.columns {
            column.write_block(&mut out);
        }
        Ok(Some((PyBytes::new(py, &out), writer.rows)))
    }
}

impl ChStageEncoder {
    /// The stage's columns, empty, with room for `rows` rows.
    fn stage_columns(&self, rows: usize) -> Vec<Column> {
        let column = |name: String, kind: Kind, nullable: bool| Column::new(name, kind, nullable, rows);
        let mut out: Vec<Column> = self.keys.iter().map(|k| column(k.name.clone(), k.kind, false)).collect();
        for field in &self.columns {
            let nullable = !matches!(field.kind, Kind::Array(_));
            out.push(column(field.name.clone(), field.kind, nullable));
            out.push(column(format!("{}__ts", field.name), Kind::Int64, true));
            out.push(column(format!("{}__exp", field.name), Kind::Int64, true));
        }
        out.push(column("_live_ts".into(), Kind::Int64, true));
        out.push(column("_live_exp".into(), Kind::Int64, true));
        out.push(column("_version".into(), Kind::UInt256, false));
        out
    }

    /// Appends one non-null value to `column` (its null-map byte included); canonical-JSON columns
    /// always take the encoder's text, never a driver value as it is.
    fn write_value(&self, field: &Field, value: &Bound<'_, PyAny>, column: &mut Column) -> PyResult<()> {
        let kind = if field.kind == Kind::Json { Kind::String } else { field.kind };
        let store = |v: &Bound<'_, PyAny>, c: &mut Column| self.write_native(kind, v, c);
        store_value(&field.name, &field.encoder, value, field.kind != Kind::Json, column, store, Column::null)
    }

    /// Appends `value` if it has the Python type `kind` takes as it is; false (nothing kept) otherwise.
    fn write_native(&self, kind: Kind, value: &Bound<'_, PyAny>, column: &mut Column) -> PyResult<bool> {
        let data = &mut column.data;
        match kind {
            Kind::String | Kind::Json => {
                if let Ok(text) = value.cast_exact::<PyString>() {
                    string(data, text.to_str()?.as_bytes());
                } else if let Ok(bytes) = value.cast_exact::<PyBytes>() {
                    string(data, bytes.as_bytes());
                } else {
                    return Ok(false);
                }
            }
            Kind::Int8 | Kind::Int16 | Kind::Int32 | Kind::Int64 => {
                if !value.is_exact_instance_of::<PyInt>() {
                    return Ok(false);
                }
                let number: i64 = value.extract().map_err(|_| out_of_range(kind))?;
                match kind {
                    Kind::Int8 => {
                        data.extend_from_slice(&i8::try_from(number).map_err(|_| out_of_range(kind))?.to_le_bytes())
                    }
                    Kind::Int16 => {
                        data.extend_from_slice(&i16::try_from(number).map_err(|_| out_of_range(kind))?.to_le_bytes())
                    }
                    Kind::Int32 => {
                        data.extend_from_slice(&i32::try_from(number).map_err(|_| out_of_range(kind))?.to_le_bytes())
                    }
                    _ => data.extend_from_slice(&number.to_le_bytes()),
                }
            }
            Kind::Float32 | Kind::Float64 => {
                let Ok(number) = value.cast_exact::<PyFloat>() else { return Ok(false) };
                let number = number.value();
                if kind == Kind::Float64 {
                    data.extend_from_slice(&number.to_le_bytes());
                } else {
                    let single = number as f32;
                    if single.is_infinite() && !number.is_infinite() {
                        return Err(PyOverflowError::new_err("value out of Float32 range"));
                    }
                    data.extend_from_slice(&single.to_le_bytes());
                }
            }
            Kind::Bool => {
                let Ok(flag) = value.cast_exact::<PyBool>() else { return Ok(false) };
                data.push(u8::from(flag.is_true()));
            }
            Kind::Date32 => {
                let Ok(day) = value.cast_exact::<PyDate>() else { return Ok(false) };
                let days = ordinal(day.get_year(), day.get_month(), day.get_day()) - UNIX_EPOCH_ORDINAL;
                data.extend_from_slice(&i32::try_from(days).expect("a Python date fits").to_le_bytes());
            }
            Kind::DateTime64 => {
                let Ok(moment) = value.cast_exact::<PyDateTime>() else { return Ok(false) };
                let micros = micros_since_year_one(moment)? - UNIX_EPOCH_MICROS;
                data.extend_from_slice(&micros.div_euclid(1000).to_le_bytes());
            }
            Kind::Uuid => {
                let Some(number) = self.shape.uuid(value)? else { return Ok(false) };
                data.extend_from_slice(&((number >> 64) as u64).to_le_bytes());
                data.extend_from_slice(&(number as u64).to_le_bytes());
            }
            Kind::UInt256 => return Ok(false),
            Kind::Array(element) => {
                let Ok(items) = value.cast_exact::<PyList>() else { return Ok(false) };
                let start = column.data.len();
                for item in items.iter() {
                    if !self.write_native(element.kind(), &item, column)? {
                        column.data.truncate(start);
                        return Ok(false);
                    }
                }
                column.items += items.len() as u64;
                column.offsets.push(column.items);
                return Ok(true);
            }
        }
        if column.nullable {
            column.nulls.push(0);
        }
        Ok(true)
    }
}

struct StageWriter<'a> {
    encoder: &'a ChStageEncoder,
    columns: Vec<Column>,
    rows: usize,
}

impl<'py> RowWriter<'py> for StageWriter<'_> {
    fn row(&mut self, row: &Row<'py>, identity: &mut Vec<u8>) -> PyResult<()> {
        let encoder = self.encoder;
        let mut columns = self.columns.iter_mut();
        for (field, value) in encoder.keys.iter().zip(&row.keys) {
            let column = columns.next().expect("a stage column per key");
            let start = column.data.len();
            if value.is_none() {
                return Err(PyValueError::new_err(format!("key column {} is null", field.name)));
            }
            encoder.write_value(field, value, column)?;
            key_cell(matches!(field.kind, Kind::Float32 | Kind::Float64), &column.data[start..], identity);
            identity.push(0xff);
        }
        for (field, cell) in encoder.columns.iter().zip(&row.cells) {
            let (value, ts, exp) = (columns.next(), columns.next(), columns.next());
            let (value, ts, exp) = (value.expect("value"), ts.expect("ts"), exp.expect("exp"));
            match cell {
                None => {
                    value.null();
                    ts.null();
                    exp.null();
                }
                Some(cell) => {
                    match &cell.value {
                        Some(v) => encoder.write_value(field, v, value)?,
                        None => value.null(),
                    }
                    ts.int64(Some(cell.ts));
                    exp.int64(cell.exp);
                }
            }
        }
        let (live_ts, live_exp) = (columns.next().expect("_live_ts"), columns.next().expect("_live_exp"));
        live_ts.int64(row.liveness.map(|l| l.0));
        live_exp.int64(row.liveness.and_then(|l| l.1));
        let version = columns.next().expect("_version");
        version.data.extend_from_slice(&delta_version(row));
        self.rows += 1;
        Ok(())
    }
}

/// `flat.FlatRows._version` of the row as a whole state (what a new key stores), as UInt256 bytes.
fn delta_version(row: &Row<'_>) -> [u8; 32] {
    let cells = row.cells.iter().flatten().map(|cell| (cell.ts, cell.value.is_none(), cell.exp));
    version_bytes(i64::MIN, row.liveness, cells)
}

/// `flat.FlatRows._version` of a state, as UInt256 bytes (little-endian): `(sum of positive
/// writetimes, the deletion's included, << 80) + ties`, ties being per cell 2^34 for a tombstone
/// and 2^33 + min(expiry, 2^33 - 1) for an expiring cell, and the same expiry part for the
/// liveness. `cells`: `(writetime, tombstone, expiry)` of each written cell.
pub fn version_bytes(
    deleted: i64,
    liveness: Option<(i64, Option<i64>)>,
    cells: impl Iterator<Item = (i64, bool, Option<i64>)>,
) -> [u8; 32] {
    const TOMBSTONE: i128 = 1 << 34;
    const EXPIRY: i128 = 1 << 33;
    const CAP: i64 = (1 << 33) - 1;
    let positive = |ts: i64| u128::try_from(ts.max(0)).unwrap_or(0);
    let mut times: u128 = positive(deleted);
    let mut ties: i128 = 0;
    if let Some((ts, exp)) = liveness {
        times += positive(ts);
        if let Some(exp) = exp {
            ties += EXPIRY + i128::from(exp.min(CAP));
        }
    }
    for (ts, tombstone, exp) in cells {
        times += positive(ts);
        if tombstone {
            ties += TOMBSTONE;
        }
        if let Some(exp) = exp {
            ties += EXPIRY + i128::from(exp.min(CAP));
        }
    }
    // (times << 80) + ties over 256 bits, as two 128-bit halves (times < 2^100 for any real table).
    let ties = u128::try_from(ties.max(0)).unwrap_or(0);
    let (low, carry) = ((times & ((1 << 48) - 1)) << 80).overflowing_add(ties);
    let high = (times >> 48) + u128::from(carry);
    let mut out = [0u8; 32];
    out[..16].copy_from_slice(&low.to_le_bytes());
    out[16..].copy_from_slice(&high.to_le_bytes());
    out
}

fn out_of_range(kind: Kind) -> PyErr {
    PyOverflowError::new_err(format!("value out of {} range", kind.type_name()))
}

/// Appends a key cell's Native bytes (little-endian) to a key identity. A float whose only set
/// bit is the sign is `-0.0`, one key with `0.0` to ClickHouse: it is written as `0.0`'s bytes.
pub fn key_cell(float: bool, encoded: &[u8], out: &mut Vec<u8>) {
    let zero = encoded.split_last().is_some_and(|(&sign, rest)| sign & 0x7f == 0 && rest.iter().all(|&b| b == 0));
    if float && zero {
        out.extend(std::iter::repeat_n(0u8, encoded.len()));
    } else {
        out.extend_from_slice(encoded);
    }
}

pub fn varint(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

pub fn string(out: &mut Vec<u8>, bytes: &[u8]) {
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::varint;

    #[test]
    fn varints_are_leb128() {
        for (value, expected) in
            [(0u64, vec![0u8]), (127, vec![0x7f]), (128, vec![0x80, 0x01]), (300, vec![0xac, 0x02])]
        {
            let mut out = Vec::new();
            varint(&mut out, value);
            assert_eq!(out, expected);
        }
    }
}
