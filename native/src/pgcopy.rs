//! Plain-upsert events -> PostgreSQL binary COPY data for a staging table.
//!
//! The Python fast path (`sinks/postgres/records.py`, `RecordBuilder.fast`) turns each event into a
//! record tuple and asyncpg encodes the tuples for COPY; both steps together cost about 10 µs a row,
//! more than the merge on the server. This encoder does both in one pass over the events and returns
//! the COPY payload itself. It follows `RecordBuilder.fast` rule for rule (same record layout, same
//! cell semantics, `None` for any batch the general path must take) and encodes values as asyncpg's
//! binary codecs do; values of an unexpected Python type go through the column's Python encoder
//! (`typemap.pg_encoder`) first, exactly like the records the Python path builds.

use std::collections::{HashMap, HashSet};

use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyBytes, PyDate, PyDateAccess, PyDateTime, PyDict, PyFloat, PyInt, PyList, PyString, PyTimeAccess, PyType,
    PyTzInfoAccess,
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
    /// A multi-cell column: two fields (state, deletion time), always NULL on this path.
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

/// Classes the encoder compares against (exact types, as the Python path's `type(x) is` checks).
struct Classes {
    upsert: Py<PyAny>,
    cell: Py<PyType>,
    decimal: Py<PyType>,
    uuid: Py<PyType>,
}

/// Writes one table's plain-upsert batches as binary COPY data in `TableSql.row_columns` order.
#[pyclass(module = "headrace_native", frozen)]
pub struct PgCopyEncoder {
    classes: Classes,
    partition: Vec<Field>,
    clustering: Vec<Field>,
    columns: Vec<Field>,
    /// Cassandra column name -> index into `columns` (single-cell columns only).
    slots: HashMap<String, usize>,
    /// Names whose cells only the general path handles.
    general: HashSet<String>,
    /// Fields per record.
    width: usize,
}

/// A cell of the row being built: absent, or the writetime, expiry and encoded value (a range of `values`).
#[derive(Clone, Copy)]
enum Slot {
    Absent,
    Cell { ts: i64, exp: Option<i64>, value: Option<(usize, usize)> },
}

#[pymethods]
impl PgCopyEncoder {
    /// `classes`: `upsert` (Op.UPSERT), `cell`, `decimal`, `uuid`; key and column specs are
    /// `(name, wire, encoder)` tuples, `columns` in record order; `general`: names that force the general path.
    #[new]
    fn new(
        classes: &Bound<'_, PyDict>,
        partition: Vec<(String, String, Py<PyAny>)>,
        clustering: Vec<(String, String, Py<PyAny>)>,
        columns: Vec<(String, String, Py<PyAny>)>,
        general: Vec<String>,
    ) -> PyResult<Self> {
        let item = |name: &str| -> PyResult<Bound<'_, PyAny>> {
            classes.get_item(name)?.ok_or_else(|| pyo3::exceptions::PyKeyError::new_err(name.to_owned()))
        };
        let fields = |specs: Vec<(String, String, Py<PyAny>)>| -> PyResult<Vec<Field>> {
            specs
                .into_iter()
                .map(|(name, wire, encoder)| Ok(Field { name, wire: Wire::from_name(&wire)?, encoder }))
                .collect()
        };
        let columns = fields(columns)?;
        let slots = columns
            .iter()
            .enumerate()
            .filter(|(_, f)| f.wire != Wire::Multi)
            .map(|(i, f)| (f.name.clone(), i))
            .collect();
        let partition = fields(partition)?;
        let clustering = fields(clustering)?;
        let width = partition.len()
            + clustering.len()
            + columns.iter().map(|f| if f.wire == Wire::Multi { 2 } else { 3 }).sum::<usize>()
            + 3;
        Ok(Self {
            classes: Classes {
                upsert: item("upsert")?.unbind(),
                cell: item("cell")?.cast_into()?.unbind(),
                decimal: item("decimal")?.cast_into()?.unbind(),
                uuid: item("uuid")?.cast_into()?.unbind(),
            },
            partition,
            clustering,
            columns,
            slots,
            general: general.into_iter().collect(),
            width,
        })
    }

    /// `(payload, rows)` for a batch of plain upserts of distinct rows, or None when the batch needs
    /// the general path (`RecordBuilder.fast` returns None for exactly the same batches).
    fn encode<'py>(&self, events: &Bound<'py, PyList>) -> PyResult<Option<(Bound<'py, PyBytes>, usize)>> {
        let py = events.py();
        let upsert = self.classes.upsert.bind(py);
        let cell_class = self.classes.cell.bind(py);
        let width = i16::try_from(self.width).map_err(|_| PyValueError::new_err("too many columns for COPY"))?;
        let mut out = Vec::with_capacity(64 + events.len() * self.width * 12);
        out.extend_from_slice(SIGNATURE);
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes());
        let mut seen: HashSet<Vec<u8>> = HashSet::with_capacity(events.len());
        let mut identity = Vec::new();
        let mut row: Vec<Slot> = vec![Slot::Absent; self.columns.len()];
        let mut values: Vec<u8> = Vec::new();
        for event in events.iter() {
            if !event.getattr(intern!(py, "op"))?.is(upsert) || event.getattr(intern!(py, "static"))?.is_truthy()? {
                return Ok(None);
            }
            out.extend_from_slice(&width.to_be_bytes());
            let key_start = out.len();
            if !self.write_key(py, &event, &mut out)? {
                return Ok(None); // the general path reports the missing key column
            }
            identity.clear();
            self.key_identity(&out[key_start..], &mut identity);
            if !seen.insert(identity.clone()) {
                return Ok(None);
            }
            row.fill(Slot::Absent);
            values.clear();
            let cells = event.getattr(intern!(py, "cells"))?;
            let cells = cells.cast::<PyDict>()?;
            for (name, change) in cells.iter() {
                let name = name.cast::<PyString>()?.to_str()?;
                let Some(&index) = self.slots.get(name) else {
                    if self.general.contains(name) {
                        return Ok(None);
                    }
                    continue; // dropped since: the general path skips it too
                };
                if !change.get_type().is(cell_class) {
                    return Ok(None);
                }
                let ts: i64 = change.getattr(intern!(py, "timestamp"))?.extract()?;
                let value = change.getattr(intern!(py, "value"))?;
                if value.is_none() || change.getattr(intern!(py, "deleted"))?.is_truthy()? {
                    row[index] = Slot::Cell { ts, exp: None, value: None };
                    continue;
                }
                let start = values.len();
                self.write_value(py, &self.columns[index], &value, &mut values)?;
                let exp = if change.getattr(intern!(py, "ttl"))?.is_none() {
                    None
                } else {
                    change.getattr(intern!(py, "local_deletion_time"))?.extract()?
                };
                row[index] = Slot::Cell { ts, exp, value: Some((start, values.len())) };
            }
            for (field, slot) in self.columns.iter().zip(&row) {
                if field.wire == Wire::Multi {
                    null(&mut out);
                    null(&mut out);
                    continue;
                }
                match *slot {
                    Slot::Absent => {
                        null(&mut out);
                        null(&mut out);
                        null(&mut out);
                    }
                    Slot::Cell { ts, exp, value } => {
                        match value {
                            Some((start, end)) => out.extend_from_slice(&values[start..end]),
                            None => null(&mut out),
                        }
                        int8(&mut out, ts);
                        optional_int8(&mut out, exp);
                    }
                }
            }
            let liveness = event.getattr(intern!(py, "liveness"))?;
            if liveness.is_none() {
                null(&mut out);
                null(&mut out);
            } else {
                int8(&mut out, liveness.getattr(intern!(py, "timestamp"))?.extract()?);
                optional_int8(&mut out, liveness.getattr(intern!(py, "expires_at"))?.extract()?);
            }
            int8(&mut out, LIVE_TIMESTAMP);
        }
        out.extend_from_slice(&(-1i16).to_be_bytes());
        Ok(Some((PyBytes::new(py, &out), seen.len())))
    }
}

impl PgCopyEncoder {
    /// Appends the key fields; false when a key column is missing from the event.
    fn write_key(&self, py: Python<'_>, event: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> PyResult<bool> {
        for (fields, attribute) in
            [(&self.partition, intern!(py, "partition_key")), (&self.clustering, intern!(py, "clustering_key"))]
        {
            if fields.is_empty() {
                continue;
            }
            let values = event.getattr(attribute)?;
            let values = values.cast::<PyDict>()?;
            for field in fields {
                match values.get_item(&field.name)? {
                    Some(value) if value.is_none() => null(out), // PostgreSQL rejects the row, as it would asyncpg's
                    Some(value) => self.write_value(py, field, &value, out)?,
                    None => return Ok(false),
                }
            }
        }
        Ok(true)
    }

    /// The key's identity for duplicate detection: its encoded fields, with the encodings PostgreSQL
    /// compares as equal made equal (-0.0 and 0.0; numerics that differ only in display scale), as
    /// Python's `==` on the Python path's key tuples does.
    fn key_identity(&self, mut encoded: &[u8], identity: &mut Vec<u8>) {
        for field in self.partition.iter().chain(&self.clustering) {
            let length = i32::from_be_bytes(encoded[..4].try_into().expect("4 bytes"));
            let size = 4 + usize::try_from(length).unwrap_or(0);
            let (value, rest) = encoded.split_at(size);
            encoded = rest;
            match field.wire {
                Wire::Float4 | Wire::Float8 if value[4..].iter().skip(1).all(|&b| b == 0) && value[4] & 0x7f == 0 => {
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

    /// Appends one non-null value as a length-prefixed field.
    fn write_value(&self, py: Python<'_>, field: &Field, value: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> PyResult<()> {
        // jsonb values are always the encoder's canonical JSON text, never a driver value as it is.
        if field.wire != Wire::Jsonb && self.write_native(py, field.wire, value, out)? {
            return Ok(());
        }
        // Not the Python type the fast encoding expects: what the Python path would send asyncpg.
        let encoded = field.encoder.bind(py).call1((value,))?;
        if encoded.is_none() {
            null(out);
            return Ok(());
        }
        if self.write_native(py, field.wire, &encoded, out)? {
            return Ok(());
        }
        Err(PyTypeError::new_err(format!(
            "column {}: a {} value cannot be encoded as {:?}",
            field.name,
            encoded.get_type().name()?,
            field.wire
        )))
    }

    /// Appends `value` if it has the Python type `wire` takes as it is; false (nothing written) otherwise.
    fn write_native(&self, py: Python<'_>, wire: Wire, value: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> PyResult<bool> {
        match wire {
            Wire::Text | Wire::Jsonb => {
                let Ok(text) = value.cast_exact::<PyString>() else { return Ok(false) };
                let text = text.to_str()?;
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
                if !value.get_type().is(self.classes.uuid.bind(py)) {
                    return Ok(false);
                }
                let number: u128 = value.getattr(intern!(py, "int"))?.extract()?;
                length(out, 16)?;
                out.extend_from_slice(&number.to_be_bytes());
            }
            Wire::Timestamptz => {
                let Ok(moment) = value.cast_exact::<PyDateTime>() else { return Ok(false) };
                let days = days_from_civil(moment.get_year(), moment.get_month(), moment.get_day());
                let mut micros = (days - PG_EPOCH_ORDINAL) * USECS_PER_DAY
                    + ((i64::from(moment.get_hour()) * 60 + i64::from(moment.get_minute())) * 60
                        + i64::from(moment.get_second()))
                        * 1_000_000
                    + i64::from(moment.get_microsecond());
                if moment.get_tzinfo().is_some() {
                    let offset = moment.call_method0(intern!(py, "utcoffset"))?;
                    if !offset.is_none() {
                        let seconds: f64 = offset.call_method0(intern!(py, "total_seconds"))?.extract()?;
                        micros -= (seconds * 1_000_000.0).round() as i64;
                    }
                }
                int8(out, micros);
            }
            Wire::Date => {
                let Ok(day) = value.cast_exact::<PyDate>() else { return Ok(false) };
                let days = days_from_civil(day.get_year(), day.get_month(), day.get_day()) - PG_EPOCH_ORDINAL;
                length(out, 4)?;
                out.extend_from_slice(&i32::try_from(days).expect("a Python date fits").to_be_bytes());
            }
            Wire::Numeric => {
                let text =
                    if value.get_type().is(self.classes.decimal.bind(py)) || value.is_exact_instance_of::<PyInt>() {
                        value.str()?
                    } else {
                        return Ok(false);
                    };
                numeric(text.to_str()?, out)?;
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

/// Days since 0000-12-31 of a proleptic Gregorian date (`date.toordinal()`).
fn days_from_civil(year: i32, month: u8, day: u8) -> i64 {
    let (year, month, day) = (i64::from(year), i64::from(month), i64::from(day));
    let before = year - 1;
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    const CUMULATIVE: [i64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let month_days = CUMULATIVE[(month - 1) as usize] + i64::from(leap && month > 2);
    before * 365 + before / 4 - before / 100 + before / 400 + month_days + day
}

/// Appends the text of a `Decimal` or `int` as PostgreSQL's binary numeric.
///
/// Value = digits x 10^exponent, regrouped into base-10000 digits around the decimal point:
/// `ndigits, weight, sign, dscale` then the digits, trailing zero groups left out.
fn numeric(text: &str, out: &mut Vec<u8>) -> PyResult<()> {
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
        return Ok(());
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
    let dscale =
        u16::try_from((-exponent).max(0)).ok().filter(|&s| s <= 0x3FFF).ok_or_else(|| out_of_range(Wire::Numeric))?;
    let significant = match digits.iter().position(|&d| d != 0) {
        Some(first) => &digits[first..],
        None => &[][..],
    };
    let mut groups: Vec<i16> = Vec::new();
    let mut weight: i64 = 0;
    if !significant.is_empty() {
        let first_power = significant.len() as i64 - 1 + exponent;
        weight = first_power.div_euclid(4);
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
    let weight = i16::try_from(weight).map_err(|_| out_of_range(Wire::Numeric))?;
    let count = i16::try_from(groups.len()).map_err(|_| out_of_range(Wire::Numeric))?;
    length(out, 8 + 2 * groups.len())?;
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    let sign: u16 = if negative && !groups.is_empty() { 0x4000 } else { 0 };
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&dscale.to_be_bytes());
    for group in groups {
        out.extend_from_slice(&group.to_be_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{days_from_civil, numeric};

    fn encoded(text: &str) -> (i16, i16, u16, u16, Vec<i16>) {
        let mut out = Vec::new();
        numeric(text, &mut out).unwrap();
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
    }

    #[test]
    fn ordinals_match_python() {
        assert_eq!(days_from_civil(1, 1, 1), 1);
        assert_eq!(days_from_civil(2000, 1, 1), 730_120);
        assert_eq!(days_from_civil(2024, 3, 1), 738_946);
        assert_eq!(days_from_civil(9999, 12, 31), 3_652_059);
    }
}
