//! Snapshot result pages -> change events: the compiled twin of `SnapshotConverter.parse` and
//! `SnapshotConverter.python_events` (`pipeline_runtime/source/snapshot/events.py`), rule for rule.
//!
//! A page arrives as the native protocol's row bytes (the reader keeps them undecoded): a row
//! count, then per row and per column an int length (-1: null) and the bytes. A row of the
//! snapshot SELECT holds the key columns, then value, `WRITETIME` and `TTL` of each value column,
//! then the token. Keys, simple values and the elements of sets and maps are decoded with the
//! commitlog decoder's value codecs ([`ValueCodec`]: the common natives here, the rest by the
//! reference's Python function); writetimes, TTLs and tokens never become Python objects. Lists and
//! UDTs (whose elements CQL returns without their paths) go through the column's Python function,
//! the reference's own. Events are built slot by slot (`objects.rs`), so a row costs no Python
//! `__init__` calls.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::events::{CellState, EventBody, Events, Op};
use crate::objects::SlotClass;
use crate::plan::DecoderKinds;
use crate::values::{ValueCodec, signed};

/// How one value column's three fields become a cell or a collection change.
enum Kind {
    Simple(ValueCodec),
    /// Element codec.
    Set(ValueCodec),
    /// Key and value codecs.
    Map(ValueCodec, ValueCodec),
    /// Lists and UDTs: `decode` gives the driver's value of the frozen form, then
    /// `convert(value, writetimes, ttls, now_s)` the `CollectionChange`.
    Other {
        decode: ValueCodec,
        convert: Py<PyAny>,
    },
}

struct ValueColumn {
    name: Py<PyString>,
    /// Result position of the value (`WRITETIME` and `TTL` follow it).
    at: usize,
    kind: Kind,
    is_static: bool,
}

struct KeyColumn {
    name: Py<PyString>,
    codec: ValueCodec,
}

/// One table's converter; `plan` as `SnapshotConverter` resolves it.
#[pyclass(module = "headrace_native", frozen)]
pub struct SnapshotRows {
    events: Events,
    position: SlotClass,
    source_position: SlotClass,
    keyspace: Py<PyString>,
    table: Py<PyString>,
    partition: Vec<KeyColumn>,
    clustering: Vec<KeyColumn>,
    columns: Vec<ValueColumn>,
    has_statics: bool,
    /// Columns per result row: keys, three per value column, the token.
    width: usize,
}

/// `(name, decode, empty)` of a key column.
type KeyEntry = (Py<PyString>, Py<PyAny>, Py<PyAny>);
/// `(name, at, kind, static, convert, codecs)` of one value column: kind `simple`, `set`, `map` or
/// `other` (with `convert`); `codecs`: `(decode, empty)` of the value, of a set's elements, of a
/// map's keys then values, or of a list's or UDT's frozen form.
type PlanEntry = (Py<PyString>, usize, String, bool, Option<Py<PyAny>>, Vec<(Py<PyAny>, Py<PyAny>)>);

/// Running liveness of a row: the oldest live cell, whether every cell expires, the latest expiry.
struct Liveness {
    oldest: Option<i64>,
    all_expire: bool,
    latest_expiry: i64,
}

impl Liveness {
    fn cell(&mut self, timestamp: i64, expiry: Option<i64>) {
        self.oldest = Some(self.oldest.map_or(timestamp, |oldest| oldest.min(timestamp)));
        match expiry {
            None => self.all_expire = false,
            Some(expiry) => self.latest_expiry = self.latest_expiry.max(expiry),
        }
    }
}

/// The protocol's int-length-prefixed fields, read from a page or from inside a collection value.
struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    fn int(&mut self) -> PyResult<i32> {
        let bytes = self.buf.get(self.pos..self.pos + 4).ok_or_else(truncated)?;
        self.pos += 4;
        Ok(i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// One field: its bytes, or None for a null (a negative length).
    fn field(&mut self) -> PyResult<Option<&'a [u8]>> {
        let length = self.int()?;
        let Ok(length) = usize::try_from(length) else { return Ok(None) };
        let end = self.pos.checked_add(length).filter(|&end| end <= self.buf.len()).ok_or_else(truncated)?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(Some(bytes))
    }

    /// The fields of a frozen collection value: a count, then that many elements of `per_element`
    /// fields each (a map's entries are a key and a value).
    fn collection(value: &'a [u8], per_element: usize) -> PyResult<Vec<Option<&'a [u8]>>> {
        let mut fields = Fields { buf: value, pos: 0 };
        let count = usize::try_from(fields.int()?).map_err(|_| PyValueError::new_err("a negative element count"))?;
        let all = (0..count * per_element).map(|_| fields.field()).collect::<PyResult<Vec<_>>>()?;
        if fields.pos != value.len() {
            return Err(PyValueError::new_err("bytes after the last element of a collection value"));
        }
        Ok(all)
    }
}

fn truncated() -> PyErr {
    PyValueError::new_err("a snapshot page ends inside a value")
}

/// A WRITETIME, TTL or token: a big-endian integer of at most 8 bytes.
fn integer(field: Option<&[u8]>) -> PyResult<Option<i64>> {
    match field {
        None => Ok(None),
        Some(bytes) if bytes.len() <= 8 => Ok(Some(signed(bytes))),
        Some(bytes) => Err(PyValueError::new_err(format!("an integer field of {} bytes", bytes.len()))),
    }
}

/// The per-element WRITETIME or TTL list of a multi-cell column.
fn integers(field: Option<&[u8]>) -> PyResult<Vec<Option<i64>>> {
    match field {
        None => Ok(Vec::new()),
        Some(value) => Fields::collection(value, 1)?.into_iter().map(integer).collect(),
    }
}

#[pymethods]
impl SnapshotRows {
    /// `classes`: the commitlog decoder's event classes plus `position` and `source_position`;
    /// `decoders`: reference decoder function -> direct kind name (`fast.direct_decoders`).
    #[new]
    fn new(
        classes: &Bound<'_, PyDict>,
        decoders: &Bound<'_, PyDict>,
        keyspace: Py<PyString>,
        table: Py<PyString>,
        partition: Vec<KeyEntry>,
        clustering: Vec<KeyEntry>,
        plan: Vec<PlanEntry>,
    ) -> PyResult<Self> {
        let py = classes.py();
        let class = |name: &str| -> PyResult<Bound<'_, pyo3::types::PyType>> {
            Ok(classes
                .get_item(name)?
                .ok_or_else(|| pyo3::exceptions::PyKeyError::new_err(name.to_owned()))?
                .cast_into()?)
        };
        let kinds = DecoderKinds { by_function: decoders.clone().unbind() };
        let codec = |(decode, empty): &(Py<PyAny>, Py<PyAny>)| kinds.codec(py, decode.bind(py), empty.bind(py));
        let keys = |entries: Vec<KeyEntry>| -> PyResult<Vec<KeyColumn>> {
            entries
                .into_iter()
                .map(|(name, decode, empty)| Ok(KeyColumn { name, codec: codec(&(decode, empty))? }))
                .collect()
        };
        let value_count = plan.len();
        let columns = plan
            .into_iter()
            .map(|(name, at, kind, is_static, convert, codecs)| {
                let kind = match (kind.as_str(), convert, codecs.as_slice()) {
                    ("simple", _, [value]) => Kind::Simple(codec(value)?),
                    ("set", _, [element]) => Kind::Set(codec(element)?),
                    ("map", _, [key, value]) => Kind::Map(codec(key)?, codec(value)?),
                    ("other", Some(convert), [value]) => Kind::Other { decode: codec(value)?, convert },
                    (other, _, codecs) => {
                        return Err(PyValueError::new_err(format!(
                            "snapshot column kind {other:?} with {} codecs",
                            codecs.len()
                        )));
                    }
                };
                Ok(ValueColumn { name, at, kind, is_static })
            })
            .collect::<PyResult<Vec<_>>>()?;
        let (partition, clustering) = (keys(partition)?, keys(clustering)?);
        Ok(Self {
            events: Events::new(classes)?,
            position: SlotClass::new(&class("position")?, &["segment_id", "offset"])?,
            source_position: SlotClass::new(&class("source_position")?, &["node", "position"])?,
            keyspace,
            table,
            width: partition.len() + clustering.len() + 3 * value_count + 1,
            partition,
            clustering,
            has_statics: columns.iter().any(|c| c.is_static),
            columns,
        })
    }

    /// The events of one page (`data`, `columns` per row), numbered from `first`; also the last
    /// partition key seen, the row count, the last row's token and the highest token before it
    /// (`SnapshotConverter.events`, whose docstring says what each argument is).
    #[allow(clippy::too_many_arguments)]
    #[allow(clippy::type_complexity)]
    fn events<'py>(
        &self,
        data: &Bound<'py, PyBytes>,
        columns: usize,
        node: &Bound<'py, PyString>,
        first: i64,
        read_at_us: i64,
        previous_partition: Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyAny>, usize, Option<i64>, Option<i64>)> {
        let py = data.py();
        if columns != self.width {
            return Err(PyValueError::new_err(format!(
                "{}.{}: a snapshot page has {columns} columns, the SELECT asks for {}",
                self.keyspace.bind(py),
                self.table.bind(py),
                self.width
            )));
        }
        let mut page = Fields { buf: data.as_bytes(), pos: 0 };
        let count = usize::try_from(page.int()?).map_err(|_| PyValueError::new_err("a negative row count"))?;
        let now_s = read_at_us.div_euclid(1_000_000);
        let out = PyList::empty(py);
        let mut previous = previous_partition;
        let mut number = first;
        let (mut final_token, mut before_final) = (None, None);
        let mut row: Vec<Option<&[u8]>> = Vec::with_capacity(self.width);
        for _ in 0..count {
            row.clear();
            for _ in 0..self.width {
                row.push(page.field()?);
            }
            let token = integer(row[self.width - 1])?;
            if token != final_token {
                before_final = final_token;
                final_token = token;
            }
            let (event_static, event) = self.row(&row, node, &mut number, read_at_us, now_s, &mut previous)?;
            if let Some(event) = event_static {
                out.append(event)?;
            }
            if let Some(event) = event {
                out.append(event)?;
            }
        }
        if page.pos != page.buf.len() {
            return Err(PyValueError::new_err(format!(
                "{} bytes after the last row of a snapshot page",
                page.buf.len() - page.pos
            )));
        }
        Ok((out, previous, count, final_token, before_final))
    }
}

/// A collection's element cells, with each element's writetime and expiry for the row's liveness.
type Elements<'py> = (Vec<Bound<'py, PyAny>>, Vec<(i64, Option<i64>)>);

impl SnapshotRows {
    /// A key or simple value: None for a null, the codec's empty value for zero bytes.
    fn value<'py>(&self, py: Python<'py>, codec: &ValueCodec, field: Option<&[u8]>) -> PyResult<Bound<'py, PyAny>> {
        match field {
            None => Ok(py.None().into_bound(py)),
            Some([]) => Ok(codec.empty.bind(py).clone()),
            Some(bytes) => codec.decode(py, &self.events.uuid, bytes),
        }
    }

    /// The static event (when the row starts a partition with statics) and the row event (unless the
    /// row is a partition's statics alone) of one result row.
    #[allow(clippy::type_complexity)]
    fn row<'py>(
        &self,
        row: &[Option<&[u8]>],
        node: &Bound<'py, PyString>,
        number: &mut i64,
        read_at_us: i64,
        now_s: i64,
        previous: &mut Bound<'py, PyAny>,
    ) -> PyResult<(Option<Bound<'py, PyAny>>, Option<Bound<'py, PyAny>>)> {
        let py = node.py();
        let (keyspace, table) = (self.keyspace.bind(py).as_any(), self.table.bind(py).as_any());
        let key_count = self.partition.len();
        let partition_values = PyTuple::new(
            py,
            self.partition
                .iter()
                .zip(row)
                .map(|(key, field)| self.value(py, &key.codec, *field))
                .collect::<PyResult<Vec<_>>>()?,
        )?;
        let partition_key = PyDict::new(py);
        for (key, value) in self.partition.iter().zip(partition_values.iter()) {
            partition_key.set_item(key.name.bind(py), value)?;
        }
        let new_partition = self.has_statics && !partition_values.as_any().eq(&*previous)?;
        *previous = partition_values.into_any();
        let cells = PyDict::new(py);
        let statics = PyDict::new(py);
        let mut liveness = Liveness { oldest: None, all_expire: true, latest_expiry: 0 };
        for column in &self.columns {
            let Some(data) = row[column.at] else { continue };
            if column.is_static && !new_partition {
                continue;
            }
            let (writetime, ttl) = (row[column.at + 1], row[column.at + 2]);
            let regular = !column.is_static;
            let name = column.name.bind(py);
            let change = match &column.kind {
                Kind::Simple(codec) => {
                    let timestamp = integer(writetime)?
                        .ok_or_else(|| PyValueError::new_err(format!("{name}: a value without a writetime")))?;
                    let ttl = integer(ttl)?;
                    let expiry = ttl.map(|ttl| now_s + ttl);
                    if regular {
                        liveness.cell(timestamp, expiry);
                    }
                    let state = match ttl {
                        Some(ttl) => CellState::Expiring { ttl, local_deletion_time: now_s + ttl },
                        None => CellState::Live,
                    };
                    self.events.cell(py, &self.value(py, codec, Some(data))?, timestamp, state)?
                }
                Kind::Set(_) | Kind::Map(..) => {
                    let elements = self.elements(py, data, writetime, ttl, &column.kind, now_s, name)?;
                    if regular {
                        for (timestamp, expiry) in &elements.1 {
                            liveness.cell(*timestamp, *expiry);
                        }
                    }
                    self.events.collection_change(py, None, elements.0)?
                }
                Kind::Other { decode, convert } => {
                    let value = self.value(py, decode, Some(data))?;
                    let listed = |field| -> PyResult<Bound<'py, PyList>> { PyList::new(py, integers(field)?) };
                    let change = convert.bind(py).call1((value, listed(writetime)?, listed(ttl)?, now_s))?;
                    if regular {
                        for element in change.getattr(pyo3::intern!(py, "elements"))?.try_iter()? {
                            let element = element?;
                            let timestamp: i64 = element.getattr(pyo3::intern!(py, "timestamp"))?.extract()?;
                            let ttl = element.getattr(pyo3::intern!(py, "ttl"))?;
                            let expires: Option<i64> =
                                element.getattr(pyo3::intern!(py, "local_deletion_time"))?.extract()?;
                            liveness.cell(timestamp, if ttl.is_none() { None } else { expires });
                        }
                    }
                    change
                }
            };
            if column.is_static { &statics } else { &cells }.set_item(name, change)?;
        }
        let mut static_event = None;
        if !statics.is_empty() {
            *number += 1;
            let source = self.source(py, node.as_any(), *number)?;
            let mut body = EventBody::new(Op::Upsert);
            body.cells = Some(statics);
            body.is_static = true;
            static_event =
                Some(self.events.change_event(py, [keyspace, table, partition_key.as_any(), &source], body)?);
        }
        let clustering = PyDict::new(py);
        let mut all_null = true;
        for (i, key) in self.clustering.iter().enumerate() {
            let field = row[key_count + i];
            all_null &= field.is_none();
            clustering.set_item(key.name.bind(py), self.value(py, &key.codec, field)?)?;
        }
        if !self.clustering.is_empty() && all_null {
            return Ok((static_event, None)); // a partition with static cells and no rows: SELECT shows one row of nulls
        }
        let live = match liveness.oldest {
            None => self.events.liveness(py, read_at_us, None)?,
            Some(oldest) if liveness.all_expire => {
                let latest = liveness.latest_expiry;
                self.events.liveness(py, oldest, Some(((latest - now_s).max(1), latest)))?
            }
            Some(oldest) => self.events.liveness(py, oldest, None)?,
        };
        *number += 1;
        let source = self.source(py, node.as_any(), *number)?;
        let mut body = EventBody::new(Op::Upsert);
        body.clustering_key = Some(clustering);
        body.cells = Some(cells);
        body.liveness = Some(live);
        let event = self.events.change_event(py, [keyspace, table, partition_key.as_any(), &source], body)?;
        Ok((static_event, Some(event)))
    }

    /// `SourcePosition(node, Position(0, number))`.
    fn source<'py>(&self, py: Python<'py>, node: &Bound<'py, PyAny>, number: i64) -> PyResult<Bound<'py, PyAny>> {
        let zero = 0i64.into_pyobject(py)?.into_any();
        let position = self.position.build(py, [&zero, &number.into_pyobject(py)?.into_any()])?;
        self.source_position.build(py, [node, &position])
    }

    /// The elements of a set (paths, no values) or a map (keys and values) with their per-element
    /// writetimes and TTLs, as `_collection` builds them.
    #[allow(clippy::too_many_arguments)]
    fn elements<'py>(
        &self,
        py: Python<'py>,
        data: &[u8],
        writetimes: Option<&[u8]>,
        ttls: Option<&[u8]>,
        kind: &Kind,
        now_s: i64,
        name: &Bound<'py, PyString>,
    ) -> PyResult<Elements<'py>> {
        let none = py.None().into_bound(py);
        let flat = Fields::collection(data, if matches!(kind, Kind::Map(..)) { 2 } else { 1 })?;
        let pairs: Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)> = match kind {
            Kind::Map(key, value) => flat
                .chunks(2)
                .map(|pair| match pair {
                    [k, v] => Ok((self.value(py, key, *k)?, self.value(py, value, *v)?)),
                    _ => Err(PyValueError::new_err(format!("{name}: a map value with an odd count of fields"))),
                })
                .collect::<PyResult<_>>()?,
            Kind::Set(element) => flat
                .iter()
                .map(|field| Ok((self.value(py, element, *field)?, none.clone())))
                .collect::<PyResult<_>>()?,
            _ => unreachable!("elements() is called for sets and maps"),
        };
        let writetimes = integers(writetimes)?;
        let ttls = integers(ttls)?;
        if pairs.len() != writetimes.len() || pairs.len() != ttls.len() {
            return Err(PyValueError::new_err(format!(
                "{name}: {} elements, {} writetimes, {} TTLs",
                pairs.len(),
                writetimes.len(),
                ttls.len()
            )));
        }
        let mut cells = Vec::with_capacity(pairs.len());
        let mut stamps = Vec::with_capacity(pairs.len());
        for ((path, value), (timestamp, ttl)) in pairs.iter().zip(writetimes.into_iter().zip(ttls)) {
            let timestamp =
                timestamp.ok_or_else(|| PyValueError::new_err(format!("{name}: an element without a writetime")))?;
            let state = match ttl {
                Some(ttl) => CellState::Expiring { ttl, local_deletion_time: now_s + ttl },
                None => CellState::Live,
            };
            cells.push(self.events.element_cell(py, path, value, timestamp, state)?);
            stamps.push((timestamp, ttl.map(|ttl| now_s + ttl)));
        }
        Ok((cells, stamps))
    }
}
