//! Headrace's compiled core: the commitlog mutation decoder and the sinks' batch encoders.
//!
//! `PgCopyEncoder` (`pgcopy.rs`) and `ChStageEncoder` (`chnative.rs`) turn a batch of plain upserts
//! into PostgreSQL binary COPY data and a ClickHouse Native block, reading the events the way the
//! Python fast paths do (`upserts.rs`); `ChMerger` (`chmerge.rs`) merges the ClickHouse deltas into
//! the stored states read back as a Native block.
//!
//! `MutationDecoder.decode(body, source)` returns exactly the `ChangeEvent`s of the pure-Python
//! reference (`pipeline_runtime/source/commitlog/mutation.py`) and raises the same exception types.
//! The walk over the bytes is Rust; the schema (which plan a table id has, which columns a header
//! names) and the values of uncommon types stay with the Python plans, which the decoder calls.
//! `pipeline_runtime/source/commitlog/fast.py` chooses between this and the reference.
//!
//! `ElementFields` (`elements.rs`) writes a set's or map's stored state for the PostgreSQL sink.
//!
//! `SnapshotRows.events` (`snapshot.rs`) turns a page of snapshot result rows into the events of
//! `SnapshotConverter.events` (`pipeline_runtime/source/snapshot/events.py`).

mod chmerge;
mod chnative;
mod cursor;
mod decoder;
mod elements;
mod events;
mod failure;
mod objects;
mod pgcopy;
mod plan;
mod slots;
mod snapshot;
mod upserts;
mod values;

use pyo3::prelude::*;

#[pymodule]
mod headrace_native {
    #[pymodule_export]
    use super::chmerge::ChMerger;
    #[pymodule_export]
    use super::chnative::ChStageEncoder;
    #[pymodule_export]
    use super::decoder::{MutationDecoder, Runtime};
    #[pymodule_export]
    use super::elements::ElementFields;
    #[pymodule_export]
    use super::pgcopy::PgCopyEncoder;
    #[pymodule_export]
    use super::snapshot::SnapshotRows;
}
