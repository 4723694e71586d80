//! Plain-upsert events -> PostgreSQL binary COPY data for a staging table.
//!
//! The Python fast path (`sinks/postgres/records.py`, `RecordBuilder.fast`) turns each event into a
//! record tuple and asyncpg encodes the tuples for COPY; both steps together cost about 10 µs a row,
//! more than the merge on the server. This encoder does both in one pass over the events and returns
//! the COPY payload itself. It follows `RecordBuilder.fast` rule for rule (same record layout, same
//! cell semantics, `None` for any batch the general path must take) and encodes values as asyncpg's
//! binary codecs do; values of an unexpected Python type go through the column's Python encoder
//! (`typemap.pg_encoder`) first, exactly like the records the Python path builds.

use crate::upserts::{Classes, Row, RowWriter, Shape, micros_since_year_one, ordinal, store_value, walk};

use pyo3::exceptions::{PyOverflowError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyBytes, PyDate, PyDateAccess, PyDateTime, PyDict, PyFloat, PyInt, PyList, PyString, PyType,
};

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
const LIVE_TIMESTAMP: i64 = i64::MIN;
/// Days from 0001-01-01 (proleptic Gregorian, day 1) to 2000-01-01, PostgreSQL's epoch.
const PG_EPOCH_ORDINAL: i64 = 730_120;
const USECS_PER_DAY: i64 = 86_400_000_000;

/// How a column's values are written: the PostgreSQL type's binary send format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wire {
    Text,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Bool,
    Bytea,
    Uuid,
    Timestamptz,
    Numeric,
    Date,
    Inet,
    Jsonb,
    /// A one-dimensional array of a numeric element type (vectors).
    Array(Element),
    /// A multi-cell column: two fields (state as jsonb, deletion time), from its fields function's
    /// `(text or None, deletion or None)`; NULL, NULL when the event does not change the column.
    Multi,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Element {
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
}

impl Element {
    fn oid(self) -> i32 {
        match self {
            Self::Int2 => 21,
            Self::Int4 => 23,
            Self::Int8 => 20,
            Self::Float4 => 700,
            Self::Float8 => 701,
        }
    }

    fn wire(self) -> Wire {
        match self {
            Self::Int2 => Wire::Int2,
            Self::Int4 => Wire::Int4,
            Self::Int8 => Wire::Int8,
            Self::Float4 => Wire::Float4,
            Self::Float8 => Wire::Float8,
        }
    }
}

impl Wire {
    fn from_name(name: &str) -> PyResult<Self> {
        let element = |name: &str| match name {
            "int2" => Some(Element::Int2),
            "int4" => Some(Element::Int4),
            "int8" => Some(Element::Int8),
            "float4" => Some(Element::Float4),
            "float8" => Some(Element::Float8),
            _ => None,
        };
        Ok(match name {
            "text" => Self::Text,
            "int2" => Self::Int2,
            "int4" => Self::Int4,
            "int8" => Self::Int8,
            "float4" => Self::Float4,
            "float8" => Self::Float8,
            "bool" => Self::Bool,
            "bytea" => Self::Bytea,
            "uuid" => Self::Uuid,
            "timestamptz" => Self::Timestamptz,
            "numeric" => Self::Numeric,
            "date" => Self::Date,
            "inet" => Self::Inet,
            "jsonb" => Self::Jsonb,
            "multi" => Self::Multi,
            _ => match name.strip_suffix("[]").and_then(element) {
                Some(element) => Self::Array(element),
                None => return Err(PyValueError::new_err(format!("unknown COPY wire type {name:?}"))),
            },
        })
    }
}

/// One stored column: its Cassandra name, wire format and the Python encoder of unexpected values.
struct Field {
    name: String,
    wire: Wire,
    encoder: Py<PyAny>,
}

/// Writes one table's plain-upsert batches as binary COPY data in `TableSql.row_columns` order.
#[pyclass(module = "headrace_native", frozen)]
pub struct PgCopyEncoder {
    shape: Shape,
    decimal: Py<PyType>,
    keys: Vec<Field>,
    columns: Vec<Field>,
    /// Fields per record.
    width: i16,
}

type Spec = (String, String, Py<PyAny>);

#[pymethods]
impl PgCopyEncoder {
    /// `classes`: `upsert` (Op.UPSERT), `cell`, `decimal`, `uuid`; key and column specs are
    /// `(name, wire, encoder)` tuples, `columns` in record order (wire `multi` for a multi-cell
    /// column); `general`: names that force the general path; `multi`: `(name, fields)` of the
    /// multi-cell columns this path takes, `fields(change)` giving `(jsonb text or None, deletion
    /// or None)` as the general path stores a row's only change of the column (None: the general
    /// path takes the batch).
    #[new]
    fn new(
        classes: &Bound<'_, PyDict>,
        partition: Vec<Spec>,
        clustering: Vec<Spec>,
        columns: Vec<Spec>,
        general: Vec<String>,
        multi: Vec<(String, Py<PyAny>)>,
    ) -> PyResult<Self> {
        let item = |name: &str| -> PyResult<Bound<'_, PyType>> {
            classes
                .get_item(name)?
                .ok_or_else(|| pyo3::exceptions::PyKeyError::new_err(name.to_owned()))?
                .cast_into()
                .map_err(Into::into)
        };
        let fields = |specs: Vec<Spec>| -> PyResult<Vec<Field>> {
            specs
                .into_iter()
                .map(|(name, wire, encoder)| Ok(Field { name, wire: Wire::from_name(&wire)?, encoder }))
                .collect()
        };
        let names = |specs: &[Spec]| specs.iter().map(|s| s.0.clone()).collect::<Vec<_>>();
        let shape_columns: Vec<(String, bool)> = columns.iter().map(|s| (s.0.clone(), s.1 != "multi")).collect();
        let shape =
            Shape::new(Classes::new(classes)?, names(&partition), names(&clustering), &shape_columns, general, multi)?;
        let keys: Vec<Field> = fields(partition)?.into_iter().chain(fields(clustering)?).collect();
        let columns = fields(columns)?;
        let width = keys.len() + columns.iter().map(|f| if f.wire == Wire::Multi { 2 } else { 3 }).sum::<usize>() + 3;
        Ok(Self {
            shape,
            decimal: item("decimal")?.unbind(),
            keys,
            columns,
            width: i16::try_from(width).map_err(|_| PyValueError::new_err("too many columns for COPY"))?,
        })
    }

    /// `(payload, rows)` for a batch of plain upserts of distinct rows, or None when the batch needs
    /// the general path (`RecordBuilder.fast` returns None for exactly the same batches).
    fn encode<'py>(&self, events: &Bound<'py, PyList>) -> PyResult<Option<(Bound<'py, PyBytes>, usize)>> {
        let py = events.py();
        let Some(writer) = self.walk(events)? else { return Ok(None) };
        let mut out = writer.out;
        out.extend_from_slice(&TRAILER);
        Ok(Some((PyBytes::new(py, &out), writer.rows)))
    }

    /// The same rows as `encode`, as `parts` COPY streams of consecutive rows (sizes differing by
    /// at most one), for loading over several connections at once; the rows are distinct over the
    /// whole batch, so no two streams touch one row. None where `encode` gives None.
    fn encode_parts<'py>(&self, events: &Bound<'py, PyList>, parts: usize) -> PyResult<Option<Vec<Stream<'py>>>> {
        let py = events.py();
        if parts == 0 {
            return Err(PyValueError::new_err("parts must be at least 1"));
        }
        let Some(writer) = self.walk(events)? else { return Ok(None) };
        let mut starts = writer.starts;
        starts.push(writer.out.len());
        let rows = writer.rows;
        let mut out = Vec::with_capacity(parts);
        for part in 0..parts {
            let (first, last) = (rows * part / parts, rows * (part + 1) / parts);
            let body = &writer.out[starts[first]..starts[last]];
            let mut stream = Vec::with_capacity(HEADER_LEN + body.len() + TRAILER.len());
            header(&mut stream);
            stream.extend_from_slice(body);
            stream.extend_from_slice(&TRAILER);
            out.push((PyBytes::new(py, &stream), last - first));
        }
        Ok(Some(out))
    }
}

/// One COPY stream and its row count.
type Stream<'py> = (Bound<'py, PyBytes>, usize);

/// The COPY binary header: signature, flags, header-extension length.
const HEADER_LEN: usize = SIGNATURE.len() + 8;
/// The file trailer: a tuple count of -1.
const TRAILER: [u8; 2] = (-1i16).to_be_bytes();

fn header(out: &mut Vec<u8>) {
    out.extend_from_slice(SIGNATURE);
    out.extend_from_slice(&0i32.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
}

impl PgCopyEncoder {
    /// Walks the batch into one COPY stream without its trailer; None for the general path.
    fn walk<'a, 'py>(&'a self, events: &Bound<'py, PyList>) -> PyResult<Option<CopyWriter<'a, 'py>>> {
        let mut writer = CopyWriter {
            encoder: self,
            py: events.py(),
            out: Vec::with_capacity(64 + events.len() * usize::try_from(self.width).unwrap_or(0) * 12),
            rows: 0,
            starts: Vec::with_capacity(events.len()),
        };
        header(&mut writer.out);
        Ok(walk(&self.shape, events, &mut writer)?.then_some(writer))
    }
}

struct CopyWriter<'a, 'py> {
    encoder: &'a PgCopyEncoder,
    py: Python<'py>,
    out: Vec<u8>,
    rows: usize,
    /// Where each row's tuple starts in `out`.
    starts: Vec<usize>,
}

impl<'py> RowWriter<'py> for CopyWriter<'_, 'py> {
    fn row(&mut self, row: &Row<'py>, identity: &mut Vec<u8>) -> PyResult<()> {
        let encoder = self.encoder;
        self.starts.push(self.out.len());
        let out = &mut self.out;
        out.extend_from_slice(&encoder.width.to_be_bytes());
        let key_start = out.len();
        for (field, value) in encoder.keys.iter().zip(&row.keys) {
            if value.is_none() {
                null(out); // PostgreSQL rejects the row, as it would asyncpg's
            } else {
                encoder.write_value(self.py, field, value, out)?;
            }
        }
        encoder.key_identity(&out[key_start..], identity);
        for (slot, (field, cell)) in encoder.columns.iter().zip(&row.cells).enumerate() {
            if field.wire == Wire::Multi {
                match row.multi.get(slot).and_then(Option::as_ref) {
                    Some(fields) => {
                        let (state, deleted): (Option<Bound<'py, PyAny>>, Option<i64>) = fields.extract()?;
                        match state {
                            Some(state) => {
                                if !encoder.write_native(self.py, Wire::Jsonb, &state, out)? {
                                    return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                                        "column {}: its fields function gave a state that is not text",
                                        field.name
                                    )));
                                }
                            }
                            None => null(out),
                        }
                        optional_int8(out, deleted);
                    }
                    None => {
                        null(out);
                        null(out);
                    }
                }
                continue;
            }
            match cell {
                None => {
                    null(out);
                    null(out);
                    null(out);
                }
                Some(cell) => {
                    match &cell.value {
                        Some(value) => encoder.write_value(self.py, field, value, out)?,
                        None => null(out),
                    }
                    int8(out, cell.ts);
                    optional_int8(out, cell.exp);
                }
            }
        }
        match row.liveness {
            Some((ts, exp)) => {
                int8(out, ts);
                optional_int8(out, exp);
            }
            None => {
                null(out);
                null(out);
            }
        }
        int8(out, LIVE_TIMESTAMP);
        self.rows += 1;
        Ok(())
    }
}

impl PgCopyEncoder {
    /// The key's identity for duplicate detection: its encoded fields, with the encodings PostgreSQL
    /// compares as equal made equal (-0.0 and 0.0; numerics that differ only in display scale), as
    /// Python's `==` on the Python path's key tuples does.
    fn key_identity(&self, mut encoded: &[u8], identity: &mut Vec<u8>) {
        for field in &self.keys {
            let length = i32::from_be_bytes(encoded[..4].try_into().expect("4 bytes"));
            let size = 4 + usize::try_from(length).unwrap_or(0);
            let (value, rest) = encoded.split_at(size);
            encoded = rest;
            match field.wire {
                Wire::Float4 | Wire::Float8 if value[5..].iter().all(|&b| b == 0) && value[4] & 0x7f == 0 => {
                    identity.extend_from_slice(&value[..4]);
                    identity.extend(std::iter::repeat_n(0u8, value.len() - 4));
                }
                Wire::Numeric if value.len() >= 12 => {
                    identity.extend_from_slice(&value[..10]); // length, ndigits, weight, sign
                    identity.extend_from_slice(&value[12..]); // digits, without dscale
                }
                _ => identity.extend_from_slice(value),
            }
        }
    }

    /// Appends one non-null value as a length-prefixed field; jsonb values are always the encoder's
    /// canonical JSON text, never a driver value as it is.
    fn write_value(&self, py: Python<'_>, field: &Field, value: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> PyResult<()> {
        let store = |v: &Bound<'_, PyAny>, o: &mut Vec<u8>| self.write_native(py, field.wire, v, o);
        store_value(&field.name, &field.encoder, value, field.wire != Wire::Jsonb, out, store, null)
    }

    /// Appends `value` if it has the Python type `wire` takes as it is; false (nothing written) otherwise.
    fn write_native(&self, py: Python<'_>, wire: Wire, value: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> PyResult<bool> {
        match wire {
            Wire::Text | Wire::Jsonb => {
                let Ok(text) = value.cast_exact::<PyString>() else { return Ok(false) };
                let text = text.to_str()?;
                if wire == Wire::Text && text.as_bytes().contains(&0) {
                    return Ok(false); // PostgreSQL text has no U+0000: the column's encoder names the row's fault
                }
                let jsonb = usize::from(wire == Wire::Jsonb);
                length(out, text.len() + jsonb)?;
                if jsonb == 1 {
                    out.push(1); // jsonb binary format version
                }
                out.extend_from_slice(text.as_bytes());
            }
            Wire::Int2 | Wire::Int4 | Wire::Int8 => {
                if !value.is_exact_instance_of::<PyInt>() {
                    return Ok(false);
                }
                let number: i64 = value.extract().map_err(|_| out_of_range(wire))?;
                match wire {
                    Wire::Int2 => {
                        let number = i16::try_from(number).map_err(|_| out_of_range(wire))?;
                        length(out, 2)?;
                        out.extend_from_slice(&number.to_be_bytes());
                    }
                    Wire::Int4 => {
                        let number = i32::try_from(number).map_err(|_| out_of_range(wire))?;
                        length(out, 4)?;
                        out.extend_from_slice(&number.to_be_bytes());
                    }
                    _ => int8(out, number),
                }
            }
            Wire::Float4 | Wire::Float8 => {
                let Ok(number) = value.cast_exact::<PyFloat>() else { return Ok(false) };
                let number = number.value();
                if wire == Wire::Float8 {
                    length(out, 8)?;
                    out.extend_from_slice(&number.to_be_bytes());
                } else {
                    let single = number as f32;
                    if single.is_infinite() && !number.is_infinite() {
                        return Err(PyValueError::new_err("value out of float32 range"));
                    }
                    length(out, 4)?;
                    out.extend_from_slice(&single.to_be_bytes());
                }
            }
            Wire::Bool => {
                let Ok(flag) = value.cast_exact::<PyBool>() else { return Ok(false) };
                length(out, 1)?;
                out.push(u8::from(flag.is_true()));
            }
            Wire::Bytea => {
                let Ok(bytes) = value.cast_exact::<PyBytes>() else { return Ok(false) };
                let bytes = bytes.as_bytes();
                length(out, bytes.len())?;
                out.extend_from_slice(bytes);
            }
            Wire::Uuid => {
                let Some(number) = self.shape.uuid(value)? else { return Ok(false) };
                length(out, 16)?;
                out.extend_from_slice(&number.to_be_bytes());
            }
            Wire::Timestamptz => {
                if value.is_exact_instance_of::<PyInt>() {
                    // The column encoder's form, range-checked there: microseconds since 2000-01-01.
                    int8(out, value.extract()?);
                    return Ok(true);
                }
                let Ok(moment) = value.cast_exact::<PyDateTime>() else { return Ok(false) };
                int8(out, micros_since_year_one(moment)? - (PG_EPOCH_ORDINAL - 1) * USECS_PER_DAY);
            }
            Wire::Date => {
                let days = if value.is_exact_instance_of::<PyInt>() {
                    // The column encoder's form, range-checked there: days since 2000-01-01.
                    value.extract::<i64>()?
                } else {
                    let Ok(day) = value.cast_exact::<PyDate>() else { return Ok(false) };
                    ordinal(day.get_year(), day.get_month(), day.get_day()) - PG_EPOCH_ORDINAL
                };
                let Ok(days) = i32::try_from(days) else { return Ok(false) };
                length(out, 4)?;
                out.extend_from_slice(&days.to_be_bytes());
            }
            Wire::Numeric => {
                let text = if value.get_type().is(self.decimal.bind(py)) || value.is_exact_instance_of::<PyInt>() {
                    value.str()?
                } else {
                    return Ok(false);
                };
                if !numeric(text.to_str()?, out)? {
                    return Ok(false); // beyond numeric's limits: the column encoder names the row's fault
                }
            }
            Wire::Inet => {
                // ipaddress.IPv4Address / IPv6Address: what the column encoder returns.
                let Ok(packed) = value.getattr(intern!(py, "packed")) else { return Ok(false) };
                let Ok(packed) = packed.cast_exact::<PyBytes>() else { return Ok(false) };
                let address = packed.as_bytes();
                let (family, bits) = match address.len() {
                    4 => (2u8, 32u8),
                    16 => (3u8, 128u8),
                    _ => return Ok(false),
                };
                length(out, 4 + address.len())?;
                out.extend_from_slice(&[family, bits, 0, address.len() as u8]);
                out.extend_from_slice(address);
            }
            Wire::Array(element) => {
                let Ok(items) = value.cast_exact::<PyList>() else { return Ok(false) };
                let start = out.len();
                out.extend_from_slice(&0i32.to_be_bytes()); // length, filled in below
                let dimensions = i32::from(!items.is_empty());
                out.extend_from_slice(&dimensions.to_be_bytes());
                out.extend_from_slice(&0i32.to_be_bytes()); // no nulls: vector elements never are
                out.extend_from_slice(&element.oid().to_be_bytes());
                if dimensions == 1 {
                    out.extend_from_slice(&i32::try_from(items.len()).map_err(|_| out_of_range(wire))?.to_be_bytes());
                    out.extend_from_slice(&1i32.to_be_bytes());
                }
                for item in items.iter() {
                    if !self.write_native(py, element.wire(), &item, out)? {
                        out.truncate(start);
                        return Ok(false);
                    }
                }
                let size = i32::try_from(out.len() - start - 4).map_err(|_| out_of_range(wire))?;
                out[start..start + 4].copy_from_slice(&size.to_be_bytes());
            }
            Wire::Multi => return Ok(false),
        }
        Ok(true)
    }
}

fn out_of_range(wire: Wire) -> PyErr {
    PyOverflowError::new_err(format!("value out of {wire:?} range"))
}

fn length(out: &mut Vec<u8>, size: usize) -> PyResult<()> {
    let size = i32::try_from(size).map_err(|_| PyValueError::new_err("value too large for COPY"))?;
    out.extend_from_slice(&size.to_be_bytes());
    Ok(())
}

fn null(out: &mut Vec<u8>) {
    out.extend_from_slice(&(-1i32).to_be_bytes());
}

fn int8(out: &mut Vec<u8>, value: i64) {
    out.extend_from_slice(&8i32.to_be_bytes());
    out.extend_from_slice(&value.to_be_bytes());
}

fn optional_int8(out: &mut Vec<u8>, value: Option<i64>) {
    match value {
        Some(value) => int8(out, value),
        None => null(out),
    }
}

/// Appends the text of a `Decimal` or `int` as PostgreSQL's binary numeric; false (nothing
/// written) for a value beyond numeric's limits (a scale over 16383, a weight over `i16`).
///
/// Value = digits x 10^exponent, regrouped into base-10000 digits around the decimal point:
/// `ndigits, weight, sign, dscale` then the digits, trailing zero groups left out. A negative
/// exponent's scale is kept; a positive one (`1E+3`) is stored with scale 0, as numeric has no
/// negative display scale.
fn numeric(text: &str, out: &mut Vec<u8>) -> PyResult<bool> {
    let invalid = || PyValueError::new_err(format!("invalid numeric value {text:?}"));
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let special = match body {
        "NaN" | "sNaN" => Some(0xC000u16),
        "Infinity" | "Inf" => Some(if negative { 0xF000 } else { 0xD000 }),
        _ => None,
    };
    if let Some(sign) = special {
        length(out, 8)?;
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(&sign.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        return Ok(true);
    }
    let (mantissa, exponent) = match body.find(['E', 'e']) {
        Some(at) => (&body[..at], body[at + 1..].parse::<i64>().map_err(|_| invalid())?),
        None => (body, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() && fraction.is_empty() || !whole.bytes().chain(fraction.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let exponent = exponent - fraction.len() as i64;
    let digits: Vec<u8> = whole.bytes().chain(fraction.bytes()).map(|b| b - b'0').collect();
    let Some(dscale) = u16::try_from((-exponent).max(0)).ok().filter(|&s| s <= 0x3FFF) else { return Ok(false) };
    let significant = match digits.iter().position(|&d| d != 0) {
        Some(first) => &digits[first..],
        None => &[][..],
    };
    let mut groups: Vec<i16> = Vec::new();
    let mut weight: i64 = 0;
    if !significant.is_empty() {
        let first_power = significant.len() as i64 - 1 + exponent;
        weight = first_power.div_euclid(4);
        if i16::try_from(weight).is_err() {
            return Ok(false);
        }
        let last_group = exponent.div_euclid(4);
        groups = vec![0; usize::try_from(weight - last_group + 1).map_err(|_| invalid())?];
        for (i, &digit) in significant.iter().enumerate() {
            let power = first_power - i as i64;
            let group = power.div_euclid(4);
            groups[(weight - group) as usize] += i16::from(digit) * 10i16.pow(power.rem_euclid(4) as u32);
        }
        while groups.last() == Some(&0) {
            groups.pop();
        }
    }
    let Ok(weight) = i16::try_from(weight) else { return Ok(false) };
    let Ok(count) = i16::try_from(groups.len()) else { return Ok(false) };
    length(out, 8 + 2 * groups.len())?;
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    let sign: u16 = if negative && !groups.is_empty() { 0x4000 } else { 0 };
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&dscale.to_be_bytes());
    for group in groups {
        out.extend_from_slice(&group.to_be_bytes());
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::numeric;

    fn encoded(text: &str) -> (i16, i16, u16, u16, Vec<i16>) {
        let mut out = Vec::new();
        assert!(numeric(text, &mut out).unwrap());
        let word = |i: usize| i16::from_be_bytes([out[4 + 2 * i], out[5 + 2 * i]]);
        let count = word(0);
        let digits = (0..count as usize).map(|i| word(4 + i)).collect();
        (count, word(1), word(2) as u16, word(3) as u16, digits)
    }

    #[test]
    fn numerics_regroup_around_the_point() {
        assert_eq!(encoded("0"), (0, 0, 0, 0, vec![]));
        assert_eq!(encoded("0.00"), (0, 0, 0, 2, vec![]));
        assert_eq!(encoded("12345.678"), (3, 1, 0, 3, vec![1, 2345, 6780]));
        assert_eq!(encoded("-0.0001"), (1, -1, 0x4000, 4, vec![1]));
        assert_eq!(encoded("1E+5"), (1, 1, 0, 0, vec![10]));
        assert_eq!(encoded("1.5E-7"), (1, -2, 0, 8, vec![15]));
        assert_eq!(encoded("100000000"), (1, 2, 0, 0, vec![1]));
        assert_eq!(encoded("-0"), (0, 0, 0, 0, vec![]));
        assert_eq!(encoded("1E+3"), (1, 0, 0, 0, vec![1000]));
    }

    #[test]
    fn numerics_beyond_the_limits_are_refused_unwritten() {
        for text in ["1E-16384", "1E+131072", "1E+1000000000", "-9E-99999999999"] {
            let mut out = Vec::new();
            assert!(!numeric(text, &mut out).unwrap(), "{text}");
            assert!(out.is_empty(), "{text}");
        }
        let mut out = Vec::new();
        assert!(numeric("1E-16383", &mut out).unwrap());
    }
}
