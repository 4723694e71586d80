//! Mutation bodies -> change events: the walk of `commitlog/mutation.py`, step for step.
//!
//! The order of reads, checks and schema look-ups follows the reference exactly, so a damaged body
//! fails at the same point with the same exception type, and statistics move the same way.

use std::collections::HashMap;
use std::sync::Arc;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use crate::cursor::Cursor;
use crate::events::{CellState, DeletionTime, EventBody, Events, Op};
use crate::failure::{ErrorClasses, Failure};
use crate::plan::{ColumnKind, ColumnSpec, ComplexSpec, DecoderKinds, KeyPartSpec, TableSpec};

const TIMESTAMP_EPOCH: i64 = 1_442_880_000_000_000;
const DELETION_TIME_EPOCH: i32 = 1_442_880_000;
const NO_DELETION_TIME: i64 = i64::MAX;
const LIVE_TIMESTAMP: i64 = i64::MIN;
const INVALID_DELETION_TIME: i64 = (1 << 32) - 2;
const MAX_DELETION_TIME: i64 = (1 << 32) - 3;
const EXPIRED_LIVENESS_TTL: i64 = i32::MAX as i64;
const MESSAGING_VERSION_50: i64 = 13;

// Unfiltered flags (`UnfilteredSerializer`).
const END_OF_PARTITION: u8 = 0x01;
const IS_MARKER: u8 = 0x02;
const HAS_TIMESTAMP: u8 = 0x04;
const HAS_TTL: u8 = 0x08;
const HAS_DELETION: u8 = 0x10;
const HAS_ALL_COLUMNS: u8 = 0x20;
const HAS_COMPLEX_DELETION: u8 = 0x40;
const EXTENSION_FLAG: u8 = 0x80;
const IS_STATIC: u8 = 0x01;
// Partition update flags.
const IS_EMPTY: u8 = 0x01;
const IS_REVERSED: u8 = 0x02;
const HAS_PARTITION_DELETION: u8 = 0x04;
const HAS_STATIC_ROW: u8 = 0x08;
const HAS_ROW_ESTIMATE: u8 = 0x10;
// Cell flags (`Cell.Serializer`).
const CELL_DELETED: u8 = 0x01;
const CELL_EXPIRING: u8 = 0x02;
const CELL_EMPTY: u8 = 0x04;
const CELL_ROW_TIMESTAMP: u8 = 0x08;
const CELL_ROW_TTL: u8 = 0x10;
// Range marker kinds (`ClusteringPrefix.Kind` ordinals).
const EXCL_END: u8 = 0;
const INCL_START: u8 = 1;
const EXCL_END_INCL_START: u8 = 2;
const INCL_END_EXCL_START: u8 = 5;
const INCL_END: u8 = 6;
const EXCL_START: u8 = 7;

/// What every decoder of the process shares: the event classes, exception classes and decoder table.
#[pyclass(module = "headrace_native", frozen)]
pub struct Runtime {
    events: Events,
    errors: ErrorClasses,
    kinds: DecoderKinds,
}

#[pymethods]
impl Runtime {
    /// `classes`: the event classes and `Op` members; `errors`: `decode_error`, `schema_error` and the
    /// tuple `translated`; `decoders`: reference decoder function -> direct kind name.
    #[new]
    fn new(classes: &Bound<'_, PyDict>, errors: &Bound<'_, PyDict>, decoders: &Bound<'_, PyDict>) -> PyResult<Self> {
        let item = |name: &str| -> PyResult<Bound<'_, PyAny>> {
            errors.get_item(name)?.ok_or_else(|| pyo3::exceptions::PyKeyError::new_err(name.to_owned()))
        };
        Ok(Self {
            events: Events::new(classes)?,
            errors: ErrorClasses {
                decode_error: item("decode_error")?.cast_into()?.unbind(),
                schema_error: item("schema_error")?.cast_into()?.unbind(),
                translated: item("translated")?.unbind(),
            },
            kinds: DecoderKinds { by_function: decoders.clone().unbind() },
        })
    }
}

/// A table's plan object as the registry last returned it, and its Rust copy.
struct TableEntry {
    plan: Py<PyAny>,
    spec: TableSpec,
}

/// Decodes mutation bodies of one messaging version into `ChangeEvent`s, like `MutationDecoder`.
#[pyclass(module = "headrace_native")]
pub struct MutationDecoder {
    plans: Py<PyAny>,
    version: i64,
    #[pyo3(get)]
    stats: Py<PyAny>,
    runtime: Py<Runtime>,
    tables: HashMap<[u8; 16], TableEntry>,
}

#[pymethods]
impl MutationDecoder {
    #[new]
    fn new(plans: Py<PyAny>, messaging_version: i64, stats: Py<PyAny>, runtime: Py<Runtime>) -> Self {
        Self { plans, version: messaging_version, stats, runtime, tables: HashMap::new() }
    }

    /// All events of one mutation, in the order Cassandra serialized them.
    fn decode<'py>(&mut self, body: &Bound<'py, PyBytes>, source: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
        let py = body.py();
        let runtime = self.runtime.get();
        let mut walk = Walk {
            py,
            runtime,
            plans: self.plans.bind(py),
            stats: self.stats.bind(py),
            body,
            cursor: Cursor::new(body.as_bytes()),
            version: self.version,
            min_ts: TIMESTAMP_EPOCH,
            min_ldt: i64::from(DELETION_TIME_EPOCH),
            min_ttl: 0,
            source,
            events: Vec::new(),
            partition_updates: 0,
        };
        let outcome = walk.mutation(&mut self.tables);
        let stats = self.stats.bind(py);
        add(stats, intern!(py, "partition_updates"), walk.partition_updates)?;
        match outcome {
            Ok(()) => {
                add(stats, intern!(py, "mutations"), 1)?;
                add(stats, intern!(py, "events"), walk.events.len() as u64)?;
                PyList::new(py, walk.events)
            }
            Err(failure) => Err(failure.into_pyerr(py, &runtime.errors, walk.cursor.pos)),
        }
    }
}

fn add(stats: &Bound<'_, PyAny>, name: &Bound<'_, pyo3::types::PyString>, amount: u64) -> PyResult<()> {
    if amount > 0 {
        stats.setattr(name, stats.getattr(name)?.add(amount)?)?;
    }
    Ok(())
}

/// The columns of one row: the whole header, or the subset a row names.
enum Subset {
    All,
    Some(Vec<usize>),
}

/// The state of decoding one mutation body.
struct Walk<'a, 'py> {
    py: Python<'py>,
    runtime: &'a Runtime,
    plans: &'a Bound<'py, PyAny>,
    stats: &'a Bound<'py, PyAny>,
    body: &'a Bound<'py, PyBytes>,
    cursor: Cursor<'a>,
    version: i64,
    min_ts: i64,
    min_ldt: i64,
    min_ttl: i64,
    source: &'a Bound<'py, PyAny>,
    events: Vec<Bound<'py, PyAny>>,
    partition_updates: u64,
}

/// Where a row's events go: table, partition key (None when the table is not emitted), clustering.
struct RowContext<'r, 'py> {
    spec: &'r TableSpec,
    partition_key: Option<&'r Bound<'py, PyAny>>,
    clustering_key: Option<Bound<'py, PyDict>>,
    is_static: bool,
}

impl<'a, 'py> Walk<'a, 'py> {
    fn mutation(&mut self, tables: &mut HashMap<[u8; 16], TableEntry>) -> Result<(), Failure> {
        let count = self.cursor.uvint()?;
        if count == 0 {
            return Err(Failure::Invalid("mutation with no partition update".into()));
        }
        for _ in 0..count {
            self.update(tables)?;
        }
        if !self.cursor.at_end() {
            let left = self.cursor.buf.len() - self.cursor.pos;
            return Err(Failure::Invalid(format!("{left} bytes left after the last partition update")));
        }
        Ok(())
    }

    // -- deltas from the update's encoding stats ---------------------------------------------

    fn timestamp(&mut self) -> Result<i64, Failure> {
        Ok((self.cursor.uvint()? as i64).wrapping_add(self.min_ts))
    }

    fn local_deletion_time(&mut self) -> Result<i64, Failure> {
        Ok(i64::from(self.cursor.int32()?) + self.min_ldt)
    }

    fn ttl(&mut self) -> Result<i64, Failure> {
        Ok(i64::from(self.cursor.int32()?) + self.min_ttl)
    }

    /// A row, partition or range deletion; None when it is LIVE.
    fn deletion(&mut self) -> Result<Option<DeletionTime>, Failure> {
        let timestamp = self.timestamp()?;
        let mut ldt = self.local_deletion_time()?;
        if timestamp == LIVE_TIMESTAMP {
            return Ok(None);
        }
        if !(0..=MAX_DELETION_TIME).contains(&ldt) {
            ldt = INVALID_DELETION_TIME;
        }
        Ok(Some(DeletionTime { timestamp, local_deletion_time: ldt }))
    }

    fn complex_deletion(&mut self) -> Result<Option<DeletionTime>, Failure> {
        let timestamp = self.timestamp()?;
        let mut ldt = self.local_deletion_time()?;
        if timestamp == LIVE_TIMESTAMP {
            return Ok(None);
        }
        if ldt < 0 {
            ldt = self.negative_ldt(ldt);
        } else if ldt > MAX_DELETION_TIME {
            ldt = INVALID_DELETION_TIME;
        }
        Ok(Some(DeletionTime { timestamp, local_deletion_time: ldt }))
    }

    /// Negative local deletion times: invalid under messaging 12, unsigned (past 2038) from 13 on.
    fn negative_ldt(&self, ldt: i64) -> i64 {
        if self.version < MESSAGING_VERSION_50 { INVALID_DELETION_TIME } else { ldt & 0xFFFF_FFFF }
    }

    /// `Cell.decodeLocalDeletionTime`.
    fn decode_ldt(&self, ldt: i64, ttl: i64) -> i64 {
        if ldt >= ttl {
            ldt
        } else if ldt < 0 {
            self.negative_ldt(ldt)
        } else if ttl == EXPIRED_LIVENESS_TTL {
            ldt
        } else {
            INVALID_DELETION_TIME
        }
    }

    fn length(&mut self) -> Result<usize, Failure> {
        usize::try_from(self.cursor.uvint()?).map_err(|_| Failure::Truncated)
    }

    // -- partition updates ----------------------------------------------------------------

    fn update(&mut self, tables: &mut HashMap<[u8; 16], TableEntry>) -> Result<(), Failure> {
        let py = self.py;
        let id: [u8; 16] = self.cursor.take(16)?.try_into().expect("16 bytes");
        let plan = self.plans.call1((PyBytes::new(py, &id),))?;
        self.partition_updates += 1;
        let entry = match tables.get_mut(&id) {
            Some(entry) if entry.plan.is(&plan) => entry,
            _ => {
                let spec = TableSpec::from_plan(&plan, &self.runtime.kinds)?;
                tables.insert(id, TableEntry { plan: plan.clone().unbind(), spec });
                tables.get_mut(&id).expect("just inserted")
            }
        };
        let length = self.length()?;
        let key = self.cursor.take(length)?;
        let flags = self.cursor.byte()?;
        if flags & IS_EMPTY != 0 {
            return Ok(());
        }
        if flags & IS_REVERSED != 0 {
            return Err(Failure::Invalid("reversed partition update in a mutation".into()));
        }
        self.min_ts = (self.cursor.uvint()? as i64).wrapping_add(TIMESTAMP_EPOCH);
        self.min_ldt = i64::from(self.cursor.int32()?.wrapping_add(DELETION_TIME_EPOCH));
        self.min_ttl = i64::from(self.cursor.int32()?);
        let statics = if flags & HAS_STATIC_ROW != 0 { Some(self.columns(&mut entry.spec, &plan)?) } else { None };
        let regulars = self.columns(&mut entry.spec, &plan)?;
        let spec = &entry.spec;
        if let Some(reason) = &spec.skip_reason {
            let skipped = self.stats.getattr(intern!(py, "skipped"))?;
            let seen = skipped.call_method1(intern!(py, "get"), (reason, 0))?;
            skipped.set_item(reason, seen.add(1)?)?;
        }
        let partition_key = if spec.emit { Some(self.partition_key(spec, key)?.into_any()) } else { None };
        if flags & HAS_PARTITION_DELETION != 0 {
            let deletion = self.deletion()?;
            if let (Some(pk), Some(deletion)) = (&partition_key, deletion) {
                let mut body = EventBody::new(Op::DeletePartition);
                body.deletion = Some(self.runtime.events.deletion(py, deletion)?);
                self.push(spec, pk, body)?;
            }
        }
        if let Some(statics) = statics {
            let row_flags = self.cursor.byte()?;
            if row_flags & EXTENSION_FLAG == 0 {
                return Err(Failure::Invalid("static row without extended flags".into()));
            }
            let extended = self.cursor.byte()?;
            if extended & IS_STATIC == 0 {
                return Err(Failure::Invalid("static row not flagged static".into()));
            }
            let row = RowContext {
                spec,
                partition_key: partition_key.as_ref(),
                clustering_key: partition_key.as_ref().map(|_| PyDict::new(py)),
                is_static: true,
            };
            self.row_body(&row, &statics, row_flags)?;
        }
        if flags & HAS_ROW_ESTIMATE != 0 {
            self.cursor.uvint()?;
        }
        self.rows(spec, &regulars, partition_key.as_ref())
    }

    fn columns(&mut self, spec: &mut TableSpec, plan: &Bound<'py, PyAny>) -> Result<Arc<[ColumnSpec]>, Failure> {
        let mut pos = self.cursor.pos;
        let result = spec.columns(plan, self.body, &mut pos, &self.runtime.kinds);
        self.cursor.pos = pos;
        result
    }

    /// The partition key's values (composite keys: u16 length, bytes, end-of-component byte).
    fn partition_key(&self, spec: &TableSpec, key: &[u8]) -> Result<Bound<'py, PyDict>, Failure> {
        let py = self.py;
        let values = PyDict::new(py);
        if let [part] = spec.partition_key.as_slice() {
            values.set_item(part.name.bind(py), self.key_value(part, key)?)?;
            return Ok(values);
        }
        let truncated =
            || Failure::Invalid(format!("composite partition key of {}.{} is truncated", spec.keyspace, spec.table));
        let mut pos = 0usize;
        for part in &spec.partition_key {
            if pos + 2 > key.len() {
                return Err(truncated());
            }
            let length = usize::from(u16::from_be_bytes([key[pos], key[pos + 1]]));
            pos += 2;
            let raw = key.get(pos..pos + length).ok_or_else(truncated)?;
            values.set_item(part.name.bind(py), self.key_value(part, raw)?)?;
            pos += length + 1;
        }
        Ok(values)
    }

    fn key_value(&self, part: &KeyPartSpec, raw: &[u8]) -> PyResult<Bound<'py, PyAny>> {
        if raw.is_empty() {
            Ok(part.codec.empty.bind(self.py).clone())
        } else {
            part.codec.decode(self.py, &self.runtime.events.uuid, raw)
        }
    }

    fn push(&mut self, spec: &TableSpec, partition_key: &Bound<'py, PyAny>, body: EventBody<'py>) -> PyResult<()> {
        let py = self.py;
        let head = [spec.keyspace.bind(py).as_any(), spec.table.bind(py).as_any(), partition_key, self.source];
        let event = self.runtime.events.change_event(py, head, body)?;
        self.events.push(event);
        Ok(())
    }

    // -- rows and range tombstone markers ---------------------------------------------------

    fn rows(
        &mut self,
        spec: &TableSpec,
        regulars: &[ColumnSpec],
        partition_key: Option<&Bound<'py, PyAny>>,
    ) -> Result<(), Failure> {
        let py = self.py;
        let clustering = &spec.clustering;
        let mut open_start: Option<Bound<'py, PyAny>> = None;
        let mut open_deletion: Option<DeletionTime> = None;
        let mut is_open = false;
        loop {
            let row_flags = self.cursor.byte()?;
            if row_flags & END_OF_PARTITION != 0 {
                return Ok(());
            }
            let extended = if row_flags & EXTENSION_FLAG != 0 { self.cursor.byte()? } else { 0 };
            if row_flags & IS_MARKER == 0 {
                if extended & IS_STATIC != 0 {
                    return Err(Failure::Invalid("static flag on a regular row".into()));
                }
                let clustering_key = self.clustering(clustering, partition_key.is_some())?;
                let row = RowContext { spec, partition_key, clustering_key, is_static: false };
                self.row_body(&row, regulars, row_flags)?;
                continue;
            }
            let kind = self.cursor.byte()?;
            let size = usize::from(self.cursor.u16()?);
            if size > clustering.len() {
                return Err(Failure::Invalid(format!(
                    "range bound of {size} values, table has {} clustering columns",
                    clustering.len()
                )));
            }
            let values = self.prefix(&clustering[..size], partition_key.is_some())?;
            let values = values.map(|v| PyTuple::new(py, v)).transpose()?.map(Bound::into_any);
            let bound = |inclusive: bool| -> PyResult<Option<Bound<'py, PyAny>>> {
                match (&values, size) {
                    (Some(values), 1..) => Ok(Some(self.runtime.events.bound(py, values, inclusive)?)),
                    _ => Ok(None),
                }
            };
            match kind {
                EXCL_END_INCL_START | INCL_END_EXCL_START => {
                    let end_deletion = self.deletion()?;
                    let start_deletion = self.deletion()?;
                    if let (Some(pk), Some(values)) = (partition_key, &values) {
                        if !is_open {
                            return Err(Failure::Invalid("range tombstone boundary without an open range".into()));
                        }
                        // A boundary's end is a bound even with no values (the reference builds it always).
                        let end = self.runtime.events.bound(py, values, kind == INCL_END_EXCL_START)?;
                        self.range(spec, pk, open_start.take(), Some(end), open_deletion.or(end_deletion))?;
                    }
                    open_start = bound(kind == EXCL_END_INCL_START)?;
                    open_deletion = start_deletion;
                    is_open = true;
                }
                INCL_START | EXCL_START => {
                    open_deletion = self.deletion()?;
                    open_start = bound(kind == INCL_START)?;
                    is_open = true;
                }
                EXCL_END | INCL_END => {
                    let end_deletion = self.deletion()?;
                    if let Some(pk) = partition_key {
                        if !is_open {
                            return Err(Failure::Invalid("range tombstone end without a start".into()));
                        }
                        let end = bound(kind == INCL_END)?;
                        self.range(spec, pk, open_start.take(), end, end_deletion)?;
                    }
                    is_open = false;
                    open_start = None;
                }
                _ => return Err(Failure::Invalid(format!("range tombstone marker of kind {kind}"))),
            }
        }
    }

    fn range(
        &mut self,
        spec: &TableSpec,
        partition_key: &Bound<'py, PyAny>,
        start: Option<Bound<'py, PyAny>>,
        end: Option<Bound<'py, PyAny>>,
        deletion: Option<DeletionTime>,
    ) -> Result<(), Failure> {
        let py = self.py;
        let deletion = deletion.ok_or_else(|| Failure::Invalid("range tombstone with a live deletion time".into()))?;
        let none = || py.None().into_bound(py);
        let mut body = EventBody::new(Op::DeleteRange);
        body.deletion = Some(self.runtime.events.deletion(py, deletion)?);
        body.range = Some((start.unwrap_or_else(none), end.unwrap_or_else(none)));
        Ok(self.push(spec, partition_key, body)?)
    }

    /// `parts.len()` clustering values: per 32 values a vint of null/empty bits, then the present values.
    /// Values are decoded only when `emit`; the bytes are read either way.
    fn prefix(&mut self, parts: &[KeyPartSpec], emit: bool) -> Result<Option<Vec<Bound<'py, PyAny>>>, Failure> {
        let py = self.py;
        let mut values = Vec::with_capacity(if emit { parts.len() } else { 0 });
        for (block, chunk) in parts.chunks(32).enumerate() {
            let _ = block;
            let header = self.cursor.uvint()?;
            for (i, part) in chunk.iter().enumerate() {
                let bit = 2 * i as u32;
                let value = if header >> (bit + 1) & 1 != 0 {
                    emit.then(|| py.None().into_bound(py))
                } else if header >> bit & 1 != 0 {
                    emit.then(|| part.codec.empty.bind(py).clone())
                } else {
                    let raw = self.cursor.value(part.fixed)?;
                    // The reference decodes present values even when they are empty.
                    if emit { Some(part.codec.decode(py, &self.runtime.events.uuid, raw)?) } else { None }
                };
                values.extend(value);
            }
        }
        Ok(emit.then_some(values))
    }

    fn clustering(&mut self, parts: &[KeyPartSpec], emit: bool) -> Result<Option<Bound<'py, PyDict>>, Failure> {
        let py = self.py;
        if parts.is_empty() {
            return Ok(emit.then(|| PyDict::new(py)));
        }
        let Some(values) = self.prefix(parts, emit)? else { return Ok(None) };
        let key = PyDict::new(py);
        for (part, value) in parts.iter().zip(values) {
            key.set_item(part.name.bind(py), value)?;
        }
        Ok(Some(key))
    }

    /// The row's columns, as a subset of the header (`Columns.Serializer.deserializeSubset`).
    fn subset(&mut self, count: usize) -> Result<Subset, Failure> {
        let encoded = self.cursor.uvint()?;
        if encoded == 0 {
            return Ok(Subset::All);
        }
        if count >= 64 {
            return self.large_subset(count, encoded);
        }
        if encoded >> count != 0 {
            return Err(Failure::Invalid("column subset names more columns than the header has".into()));
        }
        Ok(Subset::Some((0..count).filter(|i| encoded >> i & 1 == 0).collect()))
    }

    fn large_subset(&mut self, count: usize, delta: u64) -> Result<Subset, Failure> {
        let present = match usize::try_from(delta).ok().and_then(|delta| count.checked_sub(delta)) {
            Some(present) => present,
            None => return Err(Failure::Invalid("column subset larger than its header".into())),
        };
        let index = |cursor: &mut Cursor<'_>| -> Result<usize, Failure> {
            let value = cursor.int32()?;
            usize::try_from(value)
                .ok()
                .filter(|&i| i < count)
                .ok_or_else(|| Failure::Invalid(format!("column index {value} out of range")))
        };
        if present < count / 2 {
            let indexes = (0..present).map(|_| index(&mut self.cursor)).collect::<Result<Vec<_>, _>>()?;
            return Ok(Subset::Some(indexes));
        }
        let mut missing = vec![false; count];
        for _ in 0..delta {
            missing[index(&mut self.cursor)?] = true;
        }
        Ok(Subset::Some((0..count).filter(|&i| !missing[i]).collect()))
    }

    fn row_body(&mut self, row: &RowContext<'_, 'py>, header: &[ColumnSpec], flags: u8) -> Result<(), Failure> {
        let py = self.py;
        let emit = row.partition_key.is_some();
        let mut liveness = None;
        let mut row_ts = LIVE_TIMESTAMP;
        let mut row_ttl = 0;
        let mut row_ldt = NO_DELETION_TIME;
        if flags & HAS_TIMESTAMP != 0 {
            row_ts = self.timestamp()?;
            let mut expiring = None;
            if flags & HAS_TTL != 0 {
                row_ttl = self.ttl()?;
                let ldt = self.local_deletion_time()?;
                row_ldt = self.decode_ldt(ldt, row_ttl);
                expiring = Some((row_ttl, row_ldt));
            }
            liveness = Some((row_ts, expiring));
        }
        let row_deletion = if flags & HAS_DELETION != 0 { self.deletion()? } else { None };
        let subset = if flags & HAS_ALL_COLUMNS != 0 { Subset::All } else { self.subset(header.len())? };
        let has_complex_deletion = flags & HAS_COMPLEX_DELETION != 0;
        let cells = emit.then(|| PyDict::new(py));
        let row_cell = RowCell { ts: row_ts, ttl: row_ttl, ldt: row_ldt };
        let visit = |walk: &mut Self, column: &ColumnSpec| -> Result<(), Failure> {
            let change = match &column.kind {
                ColumnKind::Complex(codec) => {
                    walk.complex(codec, column.dropped_at, has_complex_deletion, row_cell, emit)?
                }
                ColumnKind::Simple(codec) => walk.simple(column, codec, row_cell, emit)?,
            };
            if let (Some(cells), Some(change)) = (&cells, change)
                && !column.dropped
            {
                cells.set_item(column.name.bind(py), change)?;
            }
            Ok(())
        };
        match &subset {
            Subset::All => header.iter().try_for_each(|column| visit(self, column))?,
            Subset::Some(indexes) => indexes.iter().try_for_each(|&i| visit(self, &header[i]))?,
        }
        let (Some(partition_key), Some(cells)) = (row.partition_key, cells) else { return Ok(()) };
        let clustering_key = row.clustering_key.clone();
        if let Some(deletion) = row_deletion {
            let mut body = EventBody::new(Op::DeleteRow);
            body.clustering_key = clustering_key.clone();
            body.deletion = Some(self.runtime.events.deletion(py, deletion)?);
            body.is_static = row.is_static;
            self.push(row.spec, partition_key, body)?;
            if liveness.is_none() && cells.is_empty() {
                return Ok(());
            }
        }
        let mut body = EventBody::new(Op::Upsert);
        body.clustering_key = clustering_key;
        body.cells = Some(cells);
        body.liveness = liveness.map(|(ts, expiring)| self.runtime.events.liveness(py, ts, expiring)).transpose()?;
        body.is_static = row.is_static;
        Ok(self.push(row.spec, partition_key, body)?)
    }

    /// A cell's timestamp, TTL and deletion time (`Cell.Serializer.deserialize`), after its flags.
    fn cell_times(&mut self, flags: u8, row: RowCell) -> Result<(i64, i64, i64), Failure> {
        let ts = if flags & CELL_ROW_TIMESTAMP != 0 { row.ts } else { self.timestamp()? };
        let mut ttl = 0;
        let mut ldt = NO_DELETION_TIME;
        if flags & CELL_ROW_TTL != 0 {
            ttl = row.ttl;
            ldt = row.ldt;
        } else if flags & (CELL_DELETED | CELL_EXPIRING) != 0 {
            ldt = self.local_deletion_time()?;
            if flags & CELL_EXPIRING != 0 {
                ttl = self.ttl()?;
            }
            if ttl < 0 {
                return Err(Failure::Invalid(format!("invalid TTL {ttl}")));
            }
            ldt = self.decode_ldt(ldt, ttl);
        }
        Ok((ts, ttl, ldt))
    }

    fn simple(
        &mut self,
        column: &ColumnSpec,
        codec: &crate::values::ValueCodec,
        row: RowCell,
        emit: bool,
    ) -> Result<Option<Bound<'py, PyAny>>, Failure> {
        let py = self.py;
        let flags = self.cursor.byte()?;
        let (ts, ttl, ldt) = self.cell_times(flags, row)?;
        let raw: &[u8] = if flags & CELL_EMPTY != 0 { &[] } else { self.cursor.value(column.fixed)? };
        if !emit || column.dropped || column.dropped_at.is_some_and(|dropped_at| ts <= dropped_at) {
            return Ok(None);
        }
        let events = &self.runtime.events;
        if flags & CELL_DELETED != 0 {
            let none = py.None().into_bound(py);
            return Ok(Some(events.cell(py, &none, ts, CellState::Deleted { local_deletion_time: ldt })?));
        }
        let value = if raw.is_empty() { codec.empty.bind(py).clone() } else { codec.decode(py, &events.uuid, raw)? };
        let state = if flags & CELL_EXPIRING != 0 {
            CellState::Expiring { ttl, local_deletion_time: ldt }
        } else {
            CellState::Live
        };
        Ok(Some(events.cell(py, &value, ts, state)?))
    }

    fn complex(
        &mut self,
        codec: &ComplexSpec,
        dropped_at: Option<i64>,
        has_complex_deletion: bool,
        row: RowCell,
        emit: bool,
    ) -> Result<Option<Bound<'py, PyAny>>, Failure> {
        let py = self.py;
        let shadowed = |ts: i64| dropped_at.is_some_and(|dropped_at| ts <= dropped_at);
        let deletion = if has_complex_deletion { self.complex_deletion()? } else { None };
        let deletion = deletion.filter(|deletion| !shadowed(deletion.timestamp));
        let count = self.cursor.int32()?;
        if count < 0 {
            return Err(Failure::Invalid(format!("negative cell count {count}")));
        }
        let events = &self.runtime.events;
        let mut elements = Vec::new();
        for _ in 0..count {
            let flags = self.cursor.byte()?;
            let (ts, ttl, ldt) = self.cell_times(flags, row)?;
            let path_length = self.length()?;
            let path_raw = self.cursor.take(path_length)?;
            let raw: &[u8] = if flags & CELL_EMPTY != 0 {
                &[]
            } else {
                let length = self.length()?;
                self.cursor.take(length)?
            };
            if !emit || shadowed(ts) {
                continue;
            }
            let deleted = flags & CELL_DELETED != 0;
            let decode = |codec: &crate::values::ValueCodec| -> PyResult<Bound<'py, PyAny>> {
                if raw.is_empty() { Ok(codec.empty.bind(py).clone()) } else { codec.decode(py, &events.uuid, raw) }
            };
            let none = py.None().into_bound(py);
            let (path, value) = match codec {
                ComplexSpec::Fields(fields) => {
                    let field = udt_field_index(path_raw).and_then(|i| fields.get(i)).ok_or_else(|| {
                        Failure::Invalid(format!("UDT field index {} out of range", field_index_text(path_raw)))
                    })?;
                    let value = if deleted { none } else { decode(&field.codec)? };
                    (field.name.bind(py).clone(), value)
                }
                ComplexSpec::Elements { path, value } => {
                    let path = if path_raw.is_empty() {
                        path.empty.bind(py).clone()
                    } else {
                        path.decode(py, &events.uuid, path_raw)?
                    };
                    let value = match value {
                        Some(value) if !deleted => decode(value)?,
                        _ => none,
                    };
                    (path, value)
                }
            };
            let state = if deleted {
                CellState::Deleted { local_deletion_time: ldt }
            } else if flags & CELL_EXPIRING != 0 {
                CellState::Expiring { ttl, local_deletion_time: ldt }
            } else {
                CellState::Live
            };
            elements.push(events.element_cell(py, &path, &value, ts, state)?);
        }
        if !emit || (deletion.is_none() && elements.is_empty()) {
            return Ok(None);
        }
        Ok(Some(events.collection_change(py, deletion, elements)?))
    }
}

/// The row's timestamp, TTL and deletion time, which cells may inherit.
#[derive(Clone, Copy)]
struct RowCell {
    ts: i64,
    ttl: i64,
    ldt: i64,
}

/// A UDT cell path read as a signed big-endian integer (`int.from_bytes(path, signed=True)`), if it
/// is a usable index.
fn udt_field_index(path: &[u8]) -> Option<usize> {
    // Leading sign bytes do not change the value; a path longer than 8 significant bytes is out of range.
    let significant = path.iter().position(|&b| b != 0).map_or(&[][..], |i| &path[i..]);
    if path.first().is_some_and(|&b| b & 0x80 != 0) {
        return None; // negative
    }
    if significant.len() > 8 {
        return None;
    }
    let value = significant.iter().fold(0u64, |value, &b| (value << 8) | u64::from(b));
    usize::try_from(value).ok()
}

fn field_index_text(path: &[u8]) -> String {
    if path.len() <= 8 {
        let value = match path.split_first() {
            None => 0,
            Some((&first, rest)) => rest.iter().fold(i64::from(first as i8), |v, &b| (v << 8) | i64::from(b)),
        };
        value.to_string()
    } else {
        format!("0x{}", path.iter().map(|b| format!("{b:02x}")).collect::<String>())
    }
}
