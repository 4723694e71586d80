//! The walk over a batch of plain upserts that the sinks' compiled writers share.
//!
//! Both sinks have a fast path for batches of plain upserts of distinct rows that touch only
//! single-cell regular columns (`RecordBuilder.fast` for PostgreSQL, `FlatRows.shape` for
//! ClickHouse). This is that path's reading of the events, rule for rule: a batch with any other
//! event (a deletion, a static row, a collection change, a repeated row, a missing key column)
//! makes the walk stop and report that the general path must take the batch. What a writer does
//! with each row (PostgreSQL COPY tuples, ClickHouse Native columns) is its own business.
//!
//! A writer may also take collection changes of regular multi-cell columns (PostgreSQL does): it
//! names those columns with a Python function that turns one `CollectionChange` into the column's
//! stored fields, the very function its general path applies to a row's only change of it, or into
//! None when the general path must take the batch.

use std::collections::{HashMap, HashSet};

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyType};

use crate::slots::Field;

/// The event classes and `Op` member the walk compares against, by identity, and the fields it
/// reads (by slot offset, `slots.rs`).
pub struct Classes {
    upsert: Py<PyAny>,
    cell: Py<PyType>,
    collection: Py<PyType>,
    op: Field,
    is_static: Field,
    partition_key: Field,
    clustering_key: Field,
    cells: Field,
    liveness: Field,
    cell_timestamp: Field,
    cell_value: Field,
    cell_deleted: Field,
    cell_ttl: Field,
    cell_deletion_time: Field,
    live_timestamp: Field,
    live_expires: Field,
    uuid_int: Field,
}

impl Classes {
    /// From the `upsert`, `event`, `cell`, `liveness` and `uuid` items of `classes`.
    pub fn new(classes: &Bound<'_, PyDict>) -> PyResult<Self> {
        let item = |name: &str| -> PyResult<Bound<'_, PyAny>> {
            classes.get_item(name)?.ok_or_else(|| pyo3::exceptions::PyKeyError::new_err(name.to_owned()))
        };
        let event = item("event")?.cast_into::<PyType>()?;
        let cell = item("cell")?.cast_into::<PyType>()?;
        let liveness = item("liveness")?.cast_into::<PyType>()?;
        Ok(Self {
            upsert: item("upsert")?.unbind(),
            op: Field::new(&event, "op")?,
            is_static: Field::new(&event, "static")?,
            partition_key: Field::new(&event, "partition_key")?,
            clustering_key: Field::new(&event, "clustering_key")?,
            cells: Field::new(&event, "cells")?,
            liveness: Field::new(&event, "liveness")?,
            cell_timestamp: Field::new(&cell, "timestamp")?,
            cell_value: Field::new(&cell, "value")?,
            cell_deleted: Field::new(&cell, "deleted")?,
            cell_ttl: Field::new(&cell, "ttl")?,
            cell_deletion_time: Field::new(&cell, "local_deletion_time")?,
            live_timestamp: Field::new(&liveness, "timestamp")?,
            live_expires: Field::new(&liveness, "expires_at")?,
            uuid_int: Field::new(&item("uuid")?.cast_into::<PyType>()?, "int")?,
            cell: cell.unbind(),
            collection: item("collection")?.cast_into::<PyType>()?.unbind(),
        })
    }
}

/// Which columns a table's fast path stores, by Cassandra name.
pub struct Shape {
    classes: Classes,
    pub partition: Vec<String>,
    pub clustering: Vec<String>,
    /// Column name -> slot of a stored single-cell column.
    slots: HashMap<String, usize, Fast>,
    /// Names whose cells only the general path handles (multi-cell, static, key columns...).
    general: HashSet<String, Fast>,
    /// Column name -> slot and fields function of a multi-cell column this fast path takes.
    multi: HashMap<String, (usize, Py<PyAny>), Fast>,
    /// Number of slots.
    pub columns: usize,
}

impl Shape {
    /// `columns`: every column slot in order, with whether the fast path stores it (a multi-cell
    /// column holds a slot but is never written here: its cells send the batch to the general path
    /// through `general`, unless `multi` gives its fields function).
    pub fn new(
        classes: Classes,
        partition: Vec<String>,
        clustering: Vec<String>,
        columns: &[(String, bool)],
        general: Vec<String>,
        multi: Vec<(String, Py<PyAny>)>,
    ) -> PyResult<Self> {
        let slots = columns
            .iter()
            .enumerate()
            .filter(|(_, (_, stored))| *stored)
            .map(|(i, (name, _))| (name.clone(), i))
            .collect();
        let multi = multi
            .into_iter()
            .map(|(name, fields)| {
                let slot = columns.iter().position(|(column, _)| *column == name).ok_or_else(|| {
                    pyo3::exceptions::PyValueError::new_err(format!("multi-cell column {name} has no slot"))
                })?;
                Ok((name, (slot, fields)))
            })
            .collect::<PyResult<_>>()?;
        Ok(Self {
            classes,
            partition,
            clustering,
            slots,
            general: general.into_iter().collect(),
            multi,
            columns: columns.len(),
        })
    }
}

impl Shape {
    /// The 128-bit number of a `uuid.UUID` (exactly that class), None for any other value.
    pub fn uuid(&self, value: &Bound<'_, PyAny>) -> PyResult<Option<u128>> {
        let field = &self.classes.uuid_int;
        if !field.owns(value) {
            return Ok(None);
        }
        Ok(Some(field.get(value)?.extract()?))
    }
}

/// One cell of the row being walked: its writetime, expiry (for a live expiring cell) and value
/// (None for a tombstone).
pub struct CellView<'py> {
    pub ts: i64,
    pub exp: Option<i64>,
    pub value: Option<Bound<'py, PyAny>>,
}

/// One row: key values in key order (Python None stays None), cells by slot, the fields functions'
/// results by slot (multi-cell columns the writer takes), liveness.
pub struct Row<'py> {
    pub keys: Vec<Bound<'py, PyAny>>,
    pub cells: Vec<Option<CellView<'py>>>,
    pub multi: Vec<Option<Bound<'py, PyAny>>>,
    pub liveness: Option<(i64, Option<i64>)>,
}

/// What a writer does with the rows of a batch.
pub trait RowWriter<'py> {
    /// Writes one row and appends its key's identity (equal for keys the sink stores as one row).
    fn row(&mut self, row: &Row<'py>, identity: &mut Vec<u8>) -> PyResult<()>;
}

/// Walks `events`, handing each row to `writer`; `Ok(false)` when the general path must take the
/// batch (the writer's output is then to be discarded).
pub fn walk<'py>(shape: &Shape, events: &Bound<'py, PyList>, writer: &mut impl RowWriter<'py>) -> PyResult<bool> {
    let py = events.py();
    let classes = &shape.classes;
    let upsert = classes.upsert.bind(py);
    let cell_class = classes.cell.bind(py);
    let collection_class = classes.collection.bind(py);
    let mut seen: HashSet<Vec<u8>, Fast> = HashSet::with_capacity_and_hasher(events.len(), Fast);
    let mut identity = Vec::new();
    let mut row = Row { keys: Vec::new(), cells: Vec::new(), multi: Vec::new(), liveness: None };
    for event in events.iter() {
        if !classes.op.get(&event)?.is(upsert) || classes.is_static.get(&event)?.is_truthy()? {
            return Ok(false);
        }
        row.keys.clear();
        for (names, field) in [(&shape.partition, &classes.partition_key), (&shape.clustering, &classes.clustering_key)]
        {
            if names.is_empty() {
                continue;
            }
            let values = field.get(&event)?;
            let values = values.cast::<PyDict>()?;
            for name in names {
                match values.get_item(name)? {
                    Some(value) => row.keys.push(value),
                    None => return Ok(false), // the general path reports the missing key column
                }
            }
        }
        row.cells.clear();
        row.cells.resize_with(shape.columns, || None);
        if !shape.multi.is_empty() {
            row.multi.clear();
            row.multi.resize_with(shape.columns, || None);
        }
        let cells = classes.cells.get(&event)?;
        for (name, change) in cells.cast::<PyDict>()?.iter() {
            let name = name.cast::<PyString>()?.to_str()?;
            let Some(&slot) = shape.slots.get(name) else {
                if let Some((slot, fields)) = shape.multi.get(name) {
                    if !change.get_type().is(collection_class) {
                        return Ok(false);
                    }
                    let stored = fields.bind(py).call1((change,))?;
                    if stored.is_none() {
                        return Ok(false); // the general path decides (a later change may overwrite it)
                    }
                    row.multi[*slot] = Some(stored);
                    continue;
                }
                if shape.general.contains(name) {
                    return Ok(false);
                }
                continue; // dropped since: the general path skips it too
            };
            if !change.get_type().is(cell_class) {
                return Ok(false);
            }
            let ts: i64 = classes.cell_timestamp.get(&change)?.extract()?;
            let value = classes.cell_value.get(&change)?;
            row.cells[slot] = Some(if value.is_none() || classes.cell_deleted.get(&change)?.is_truthy()? {
                CellView { ts, exp: None, value: None }
            } else {
                let exp = if classes.cell_ttl.get(&change)?.is_none() {
                    None
                } else {
                    classes.cell_deletion_time.get(&change)?.extract()?
                };
                CellView { ts, exp, value: Some(value) }
            });
        }
        let liveness = classes.liveness.get(&event)?;
        row.liveness = if liveness.is_none() {
            None
        } else {
            Some((classes.live_timestamp.get(&liveness)?.extract()?, classes.live_expires.get(&liveness)?.extract()?))
        };
        identity.clear();
        writer.row(&row, &mut identity)?;
        if !seen.insert(identity.clone()) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A hasher for the walk's small in-process sets (column names, key identities): FxHash's
/// multiply-rotate, several times faster than the default SipHash on short keys. The keys come
/// from the batch, not from an attacker able to pick collisions, so SipHash's guarantee buys nothing.
#[derive(Clone, Copy, Default)]
pub struct Fast;

impl std::hash::BuildHasher for Fast {
    type Hasher = FastHasher;
    fn build_hasher(&self) -> FastHasher {
        FastHasher(0)
    }
}

/// The hasher `Fast` builds.
pub struct FastHasher(u64);

impl std::hash::Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
        }
        for &byte in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(byte)).wrapping_mul(K);
        }
    }
    #[inline]
    fn write_u8(&mut self, byte: u8) {
        self.write(&[byte]);
    }
    #[inline]
    fn write_usize(&mut self, value: usize) {
        self.0 = (self.0.rotate_left(5) ^ value as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Stores one non-null value the way a writer's format takes it: as it is when `as_is` and its
/// Python type is the one `store` takes, else what the column's Python encoder makes of it (the
/// very value the Python path would send); a TypeError naming the column when neither fits.
pub fn store_value<'py, O>(
    column: &str,
    encoder: &Py<PyAny>,
    value: &Bound<'py, PyAny>,
    as_is: bool,
    out: &mut O,
    mut store: impl FnMut(&Bound<'py, PyAny>, &mut O) -> PyResult<bool>,
    null: impl FnOnce(&mut O),
) -> PyResult<()> {
    if as_is && store(value, out)? {
        return Ok(());
    }
    let encoded = encoder.bind(value.py()).call1((value,))?;
    if encoded.is_none() {
        null(out);
        return Ok(());
    }
    if store(&encoded, out)? {
        return Ok(());
    }
    Err(pyo3::exceptions::PyTypeError::new_err(format!(
        "column {column}: a {} value has no encoding here",
        encoded.get_type().name()?
    )))
}

/// Days since 0000-12-31 of a proleptic Gregorian date (Python's `date.toordinal()`).
pub fn ordinal(year: i32, month: u8, day: u8) -> i64 {
    const CUMULATIVE: [i64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let (year, month, day) = (i64::from(year), usize::from(month), i64::from(day));
    let before = year - 1;
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = CUMULATIVE[month - 1] + i64::from(leap && month > 2);
    before * 365 + before / 4 - before / 100 + before / 400 + month_days + day
}

/// Microseconds since 0001-01-01 00:00 UTC of a `datetime` (naive = UTC), like `datetime - datetime.min`.
pub fn micros_since_year_one(moment: &Bound<'_, pyo3::types::PyDateTime>) -> PyResult<i64> {
    use pyo3::types::{PyDateAccess, PyTimeAccess, PyTzInfoAccess};
    let py = moment.py();
    let days = ordinal(moment.get_year(), moment.get_month(), moment.get_day()) - 1;
    let seconds =
        (i64::from(moment.get_hour()) * 60 + i64::from(moment.get_minute())) * 60 + i64::from(moment.get_second());
    let mut micros = (days * 86_400 + seconds) * 1_000_000 + i64::from(moment.get_microsecond());
    if moment.get_tzinfo().is_some() {
        let offset = moment.call_method0(intern!(py, "utcoffset"))?;
        if !offset.is_none() {
            let days: i64 = offset.getattr(intern!(py, "days"))?.extract()?;
            let seconds: i64 = offset.getattr(intern!(py, "seconds"))?.extract()?;
            let extra: i64 = offset.getattr(intern!(py, "microseconds"))?.extract()?;
            micros -= (days * 86_400 + seconds) * 1_000_000 + extra;
        }
    }
    Ok(micros)
}

#[cfg(test)]
mod tests {
    use super::ordinal;

    #[test]
    fn ordinals_match_python() {
        assert_eq!(ordinal(1, 1, 1), 1);
        assert_eq!(ordinal(1970, 1, 1), 719_163);
        assert_eq!(ordinal(2000, 1, 1), 730_120);
        assert_eq!(ordinal(2024, 3, 1), 738_946);
        assert_eq!(ordinal(9999, 12, 31), 3_652_059);
    }
}
