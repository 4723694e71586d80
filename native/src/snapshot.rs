//! Snapshot result rows -> change events: the compiled twin of `SnapshotConverter.events`
//! (`pipeline_runtime/source/snapshot/events.py`), rule for rule.
//!
//! A row of the snapshot SELECT holds the key columns, then value, `WRITETIME` and `TTL` of each
//! value column, then the token. Simple columns, sets and maps are turned into cells here; the rarer
//! kinds (lists, whose elements CQL returns without their paths, and UDTs) go through the column's
//! Python function, the reference's own. Events are built slot by slot (`objects.rs`), so a row
//! costs no Python `__init__` calls.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};

use crate::events::{CellState, EventBody, Events, Op};
use crate::objects::SlotClass;

/// How one value column's three fields become a cell or a collection change.
enum Kind {
    Simple,
    Set,
    Map,
    /// Lists and UDTs: `convert(data, writetimes, ttls, now_s)` gives the `CollectionChange`.
    Other(Py<PyAny>),
}

struct ValueColumn {
    name: Py<PyString>,
    /// Result position of the value (`WRITETIME` and `TTL` follow it).
    at: usize,
    kind: Kind,
    is_static: bool,
}

/// One table's converter; `plan` as `SnapshotConverter` resolves it.
#[pyclass(module = "headrace_native", frozen)]
pub struct SnapshotRows {
    events: Events,
    position: SlotClass,
    source_position: SlotClass,
    keyspace: Py<PyString>,
    table: Py<PyString>,
    partition: Vec<Py<PyString>>,
    clustering: Vec<Py<PyString>>,
    columns: Vec<ValueColumn>,
    has_statics: bool,
}

/// `(name, at, kind, static, convert)` of one value column: kind `simple`, `set`, `map` or
/// `other` (with `convert`).
type PlanEntry = (Py<PyString>, usize, String, bool, Option<Py<PyAny>>);

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

#[pymethods]
impl SnapshotRows {
    /// `classes`: the commitlog decoder's event classes plus `position` and `source_position`.
    #[new]
    fn new(
        classes: &Bound<'_, PyDict>,
        keyspace: Py<PyString>,
        table: Py<PyString>,
        partition: Vec<Py<PyString>>,
        clustering: Vec<Py<PyString>>,
        plan: Vec<PlanEntry>,
    ) -> PyResult<Self> {
        let class = |name: &str| -> PyResult<Bound<'_, pyo3::types::PyType>> {
            Ok(classes
                .get_item(name)?
                .ok_or_else(|| pyo3::exceptions::PyKeyError::new_err(name.to_owned()))?
                .cast_into()?)
        };
        let columns = plan
            .into_iter()
            .map(|(name, at, kind, is_static, convert)| {
                let kind = match (kind.as_str(), convert) {
                    ("simple", _) => Kind::Simple,
                    ("set", _) => Kind::Set,
                    ("map", _) => Kind::Map,
                    ("other", Some(convert)) => Kind::Other(convert),
                    (other, _) => return Err(PyValueError::new_err(format!("unknown snapshot column kind {other:?}"))),
                };
                Ok(ValueColumn { name, at, kind, is_static })
            })
            .collect::<PyResult<Vec<_>>>()?;
        Ok(Self {
            events: Events::new(classes)?,
            position: SlotClass::new(&class("position")?, &["segment_id", "offset"])?,
            source_position: SlotClass::new(&class("source_position")?, &["node", "position"])?,
            keyspace,
            table,
            partition,
            clustering,
            has_statics: columns.iter().any(|c| c.is_static),
            columns,
        })
    }

    /// The events of `rows` (one page), numbered from `first`, and the last partition key seen
    /// (`SnapshotConverter.events`, whose docstring says what each argument is).
    fn events<'py>(
        &self,
        rows: &Bound<'py, PyAny>,
        node: &Bound<'py, PyString>,
        first: i64,
        read_at_us: i64,
        previous_partition: Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyAny>)> {
        let py = rows.py();
        let now_s = read_at_us.div_euclid(1_000_000);
        let (keyspace, table) = (self.keyspace.bind(py).as_any(), self.table.bind(py).as_any());
        let node = node.as_any();
        let out = PyList::empty(py);
        let mut previous = previous_partition;
        let mut number = first;
        let key_count = self.partition.len();
        for row in rows.try_iter()? {
            let row = row?;
            let row = match row.cast::<PyTuple>() {
                Ok(tuple) => tuple.clone(),
                Err(_) => PyTuple::new(py, row.try_iter()?.collect::<PyResult<Vec<_>>>()?)?,
            };
            let partition_values = row.get_slice(0, key_count);
            let partition_key = PyDict::new(py);
            for (name, value) in self.partition.iter().zip(partition_values.iter()) {
                partition_key.set_item(name.bind(py), value)?;
            }
            let new_partition = self.has_statics && !partition_values.as_any().eq(&previous)?;
            previous = partition_values.into_any();
            let cells = PyDict::new(py);
            let statics = PyDict::new(py);
            let mut liveness = Liveness { oldest: None, all_expire: true, latest_expiry: 0 };
            for column in &self.columns {
                let data = row.get_item(column.at)?;
                if data.is_none() || (column.is_static && !new_partition) {
                    continue;
                }
                let (writetime, ttl) = (row.get_item(column.at + 1)?, row.get_item(column.at + 2)?);
                let regular = !column.is_static;
                let change = match &column.kind {
                    Kind::Simple => {
                        let timestamp: i64 = writetime.extract()?;
                        let ttl: Option<i64> = ttl.extract()?;
                        let expiry = ttl.map(|ttl| now_s + ttl);
                        if regular {
                            liveness.cell(timestamp, expiry);
                        }
                        let state = match ttl {
                            Some(ttl) => CellState::Expiring { ttl, local_deletion_time: now_s + ttl },
                            None => CellState::Live,
                        };
                        self.events.cell(py, &data, timestamp, state)?
                    }
                    Kind::Set | Kind::Map => {
                        let name = column.name.bind(py);
                        let elements = self.elements(&data, &writetime, &ttl, &column.kind, now_s, name)?;
                        if regular {
                            for (timestamp, expiry) in &elements.1 {
                                liveness.cell(*timestamp, *expiry);
                            }
                        }
                        self.events.collection_change(py, None, elements.0)?
                    }
                    Kind::Other(convert) => {
                        let change = convert.bind(py).call1((&data, &writetime, &ttl, now_s))?;
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
                if column.is_static { &statics } else { &cells }.set_item(column.name.bind(py), change)?;
            }
            if !statics.is_empty() {
                number += 1;
                let source = self.source(py, node, number)?;
                let mut body = EventBody::new(Op::Upsert);
                body.cells = Some(statics);
                body.is_static = true;
                out.append(self.events.change_event(py, [keyspace, table, partition_key.as_any(), &source], body)?)?;
            }
            let clustering = PyDict::new(py);
            let mut all_null = true;
            for (i, name) in self.clustering.iter().enumerate() {
                let value = row.get_item(key_count + i)?;
                all_null &= value.is_none();
                clustering.set_item(name.bind(py), value)?;
            }
            if !self.clustering.is_empty() && all_null {
                continue; // a partition with static cells and no rows: SELECT shows it as one row of nulls
            }
            let live = match liveness.oldest {
                None => self.events.liveness(py, read_at_us, None)?,
                Some(oldest) if liveness.all_expire => {
                    let latest = liveness.latest_expiry;
                    self.events.liveness(py, oldest, Some(((latest - now_s).max(1), latest)))?
                }
                Some(oldest) => self.events.liveness(py, oldest, None)?,
            };
            number += 1;
            let source = self.source(py, node, number)?;
            let mut body = EventBody::new(Op::Upsert);
            body.clustering_key = Some(clustering);
            body.cells = Some(cells);
            body.liveness = Some(live);
            out.append(self.events.change_event(py, [keyspace, table, partition_key.as_any(), &source], body)?)?;
        }
        Ok((out, previous))
    }
}

/// A collection's element cells, with each element's writetime and expiry for the row's liveness.
type Elements<'py> = (Vec<Bound<'py, PyAny>>, Vec<(i64, Option<i64>)>);

impl SnapshotRows {
    /// `SourcePosition(node, Position(0, number))`.
    fn source<'py>(&self, py: Python<'py>, node: &Bound<'py, PyAny>, number: i64) -> PyResult<Bound<'py, PyAny>> {
        let zero = 0i64.into_pyobject(py)?.into_any();
        let position = self.position.build(py, [&zero, &number.into_pyobject(py)?.into_any()])?;
        self.source_position.build(py, [node, &position])
    }

    /// The elements of a set (paths, no values) or a map (keys and values) with their per-element
    /// writetimes and TTLs, as `_collection` builds them.
    fn elements<'py>(
        &self,
        data: &Bound<'py, PyAny>,
        writetimes: &Bound<'py, PyAny>,
        ttls: &Bound<'py, PyAny>,
        kind: &Kind,
        now_s: i64,
        name: &Bound<'py, PyString>,
    ) -> PyResult<Elements<'py>> {
        let py = data.py();
        let none = py.None().into_bound(py);
        let pairs: Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)> = match kind {
            Kind::Map => data
                .call_method0(pyo3::intern!(py, "items"))?
                .try_iter()?
                .map(|item| item?.extract())
                .collect::<PyResult<_>>()?,
            _ => data.try_iter()?.map(|element| Ok((element?, none.clone()))).collect::<PyResult<_>>()?,
        };
        let writetimes: Vec<i64> = writetimes.try_iter()?.map(|w| w?.extract()).collect::<PyResult<_>>()?;
        let ttls: Vec<Option<i64>> = ttls.try_iter()?.map(|t| t?.extract()).collect::<PyResult<_>>()?;
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
