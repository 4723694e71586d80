//! The event classes of `pipeline_runtime.events`, built natively (see [`crate::objects`]).
//!
//! Each builder fills every field in the dataclass's declaration order, with the defaults the
//! reference's constructor calls leave (`None`, `False`, a new empty dict for default factories).

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple, PyType};

use crate::objects::{SlotClass, untrack};
use crate::values::UuidFactory;

/// `Op` members, indexed like [`Op`].
#[derive(Clone, Copy)]
pub enum Op {
    Upsert = 0,
    DeleteRow = 1,
    DeletePartition = 2,
    DeleteRange = 3,
}

/// A deletion time as the reference reads it: `(markedForDeleteAt, localDeletionTime)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeletionTime {
    pub timestamp: i64,
    pub local_deletion_time: i64,
}

/// How a simple or element cell ended up: written, expiring, or a tombstone.
#[derive(Clone, Copy)]
pub enum CellState {
    Live,
    Expiring { ttl: i64, local_deletion_time: i64 },
    Deleted { local_deletion_time: i64 },
}

/// Builds the event objects; made once per process from the classes `fast.py` hands over.
pub struct Events {
    change_event: SlotClass,
    cell: SlotClass,
    element_cell: SlotClass,
    collection_change: SlotClass,
    deletion: SlotClass,
    liveness: SlotClass,
    bound: SlotClass,
    pub uuid: UuidFactory,
    ops: [Py<PyAny>; 4],
}

/// Field orders of the event dataclasses (checked against the classes when [`Events`] is made).
const CHANGE_EVENT: &[&str] = &[
    "op",
    "keyspace",
    "table",
    "partition_key",
    "source",
    "clustering_key",
    "cells",
    "liveness",
    "deletion",
    "range_start",
    "range_end",
    "static",
];
const CELL: &[&str] = &["value", "timestamp", "ttl", "local_deletion_time", "deleted"];
const COLLECTION_CHANGE: &[&str] = &["deletion", "elements"];
const DELETION: &[&str] = &["timestamp", "local_deletion_time"];
const LIVENESS: &[&str] = &["timestamp", "ttl", "expires_at"];
const BOUND: &[&str] = &["values", "inclusive"];
const ELEMENT_CELL: &[&str] = &["path", "value", "timestamp", "ttl", "local_deletion_time", "deleted"];

/// The fields of one event, beyond keyspace, table, partition key and source.
pub struct EventBody<'py> {
    pub op: Op,
    pub clustering_key: Option<Bound<'py, PyDict>>,
    pub cells: Option<Bound<'py, PyDict>>,
    pub liveness: Option<Bound<'py, PyAny>>,
    pub deletion: Option<Bound<'py, PyAny>>,
    pub range: Option<(Bound<'py, PyAny>, Bound<'py, PyAny>)>,
    pub is_static: bool,
}

impl<'py> EventBody<'py> {
    pub fn new(op: Op) -> Self {
        Self { op, clustering_key: None, cells: None, liveness: None, deletion: None, range: None, is_static: false }
    }
}

impl Events {
    pub fn new(classes: &Bound<'_, PyDict>) -> PyResult<Self> {
        let class = |name: &str| -> PyResult<Bound<'_, PyType>> {
            Ok(classes.get_item(name)?.ok_or_else(|| missing(name))?.cast_into::<PyType>()?)
        };
        let uuid_class = class("uuid")?;
        let ops = classes.get_item("ops")?.ok_or_else(|| missing("ops"))?.cast_into::<PyTuple>()?;
        Ok(Self {
            change_event: SlotClass::new(&class("change_event")?, CHANGE_EVENT)?,
            cell: SlotClass::new(&class("cell")?, CELL)?,
            element_cell: SlotClass::new(&class("element_cell")?, ELEMENT_CELL)?,
            collection_change: SlotClass::new(&class("collection_change")?, COLLECTION_CHANGE)?,
            deletion: SlotClass::new(&class("deletion")?, DELETION)?,
            liveness: SlotClass::new(&class("liveness")?, LIVENESS)?,
            bound: SlotClass::new(&class("bound")?, BOUND)?,
            uuid: UuidFactory {
                class: SlotClass::new(&uuid_class, &["int", "is_safe"])?,
                unknown: classes.get_item("safe_uuid_unknown")?.ok_or_else(|| missing("safe_uuid_unknown"))?.unbind(),
            },
            ops: [
                ops.get_item(0)?.unbind(),
                ops.get_item(1)?.unbind(),
                ops.get_item(2)?.unbind(),
                ops.get_item(3)?.unbind(),
            ],
        })
    }

    /// `ChangeEvent(op, keyspace, table, partition_key, source, ...)`.
    pub fn change_event<'py>(
        &self,
        py: Python<'py>,
        head: [&Bound<'py, PyAny>; 4],
        body: EventBody<'py>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let [keyspace, table, partition_key, source] = head;
        let none = py.None().into_bound(py);
        let clustering_key = body.clustering_key.unwrap_or_else(|| PyDict::new(py)).into_any();
        let cells = body.cells.unwrap_or_else(|| PyDict::new(py)).into_any();
        let (start, end) = body.range.unwrap_or_else(|| (none.clone(), none.clone()));
        for dict in [partition_key, &clustering_key, &cells] {
            untrack(dict); // the event's own dicts: see `objects.rs` on why
        }
        self.change_event.build(
            py,
            [
                self.ops[body.op as usize].bind(py),
                keyspace,
                table,
                partition_key,
                source,
                &clustering_key,
                &cells,
                body.liveness.as_ref().unwrap_or(&none),
                body.deletion.as_ref().unwrap_or(&none),
                &start,
                &end,
                &flag(py, body.is_static),
            ],
        )
    }

    /// `Cell(value, timestamp, ...)` for a simple column.
    pub fn cell<'py>(
        &self,
        py: Python<'py>,
        value: &Bound<'py, PyAny>,
        timestamp: i64,
        state: CellState,
    ) -> PyResult<Bound<'py, PyAny>> {
        let [ttl, ldt, deleted] = cell_tail(py, state)?;
        self.cell.build(py, [value, &int(py, timestamp)?, &ttl, &ldt, &deleted])
    }

    /// `ElementCell(path, value, timestamp, ...)` for one element of a multi-cell column.
    pub fn element_cell<'py>(
        &self,
        py: Python<'py>,
        path: &Bound<'py, PyAny>,
        value: &Bound<'py, PyAny>,
        timestamp: i64,
        state: CellState,
    ) -> PyResult<Bound<'py, PyAny>> {
        let [ttl, ldt, deleted] = cell_tail(py, state)?;
        self.element_cell.build(py, [path, value, &int(py, timestamp)?, &ttl, &ldt, &deleted])
    }

    pub fn collection_change<'py>(
        &self,
        py: Python<'py>,
        deletion: Option<DeletionTime>,
        elements: Vec<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let deletion = self.optional_deletion(py, deletion)?;
        let elements = PyTuple::new(py, elements)?.into_any();
        untrack(&elements);
        self.collection_change.build(py, [&deletion, &elements])
    }

    pub fn deletion<'py>(&self, py: Python<'py>, deletion: DeletionTime) -> PyResult<Bound<'py, PyAny>> {
        self.deletion.build(py, [&int(py, deletion.timestamp)?, &int(py, deletion.local_deletion_time)?])
    }

    pub fn optional_deletion<'py>(
        &self,
        py: Python<'py>,
        deletion: Option<DeletionTime>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match deletion {
            Some(deletion) => self.deletion(py, deletion),
            None => Ok(py.None().into_bound(py)),
        }
    }

    /// `Liveness(timestamp)` or, for a row with a TTL, `Liveness(timestamp, ttl, expires_at)`.
    pub fn liveness<'py>(
        &self,
        py: Python<'py>,
        timestamp: i64,
        expiring: Option<(i64, i64)>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (ttl, expires_at) = match expiring {
            Some((ttl, expires_at)) => (int(py, ttl)?, int(py, expires_at)?),
            None => (py.None().into_bound(py), py.None().into_bound(py)),
        };
        self.liveness.build(py, [&int(py, timestamp)?, &ttl, &expires_at])
    }

    /// `Bound(values, inclusive)`.
    pub fn bound<'py>(
        &self,
        py: Python<'py>,
        values: &Bound<'py, PyAny>,
        inclusive: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.bound.build(py, [values, &flag(py, inclusive)])
    }
}

fn missing(name: &str) -> PyErr {
    pyo3::exceptions::PyKeyError::new_err(format!("native event classes lack {name:?}"))
}

fn int<'py>(py: Python<'py>, value: i64) -> PyResult<Bound<'py, PyAny>> {
    Ok(value.into_pyobject(py)?.into_any())
}

fn flag(py: Python<'_>, value: bool) -> Bound<'_, PyAny> {
    pyo3::types::PyBool::new(py, value).to_owned().into_any()
}

/// `ttl`, `local_deletion_time` and `deleted` of a cell in `state`.
fn cell_tail(py: Python<'_>, state: CellState) -> PyResult<[Bound<'_, PyAny>; 3]> {
    let none = || py.None().into_bound(py);
    Ok(match state {
        CellState::Live => [none(), none(), flag(py, false)],
        CellState::Expiring { ttl, local_deletion_time } => {
            [int(py, ttl)?, int(py, local_deletion_time)?, flag(py, false)]
        }
        CellState::Deleted { local_deletion_time } => [none(), int(py, local_deletion_time)?, flag(py, true)],
    })
}
