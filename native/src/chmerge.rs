//! Staged deltas + newest stored states -> the changed whole rows, on ClickHouse Native blocks.
//!
//! The ClickHouse sink's merge for plain-upsert batches (`sinks/clickhouse/sink.py`): the deltas
//! are the `ChStageEncoder` block, the stored states the Native result of `TableSql.latest_staged`,
//! and the output a Native block of the state table's columns. Values are never decoded into
//! Python objects: each output cell is the delta's or the stored row's bytes, chosen with the rules
//! of `flat.FlatRows.merge` (the spec; `tests/integration/sinks/test_ch_native_merge.py` holds them
//! equal). Only an equal-writetime tie between two different values needs their order; for a
//! value ClickHouse and Python order differently (NaN) the merge declines, and the sink merges that
//! batch in Python.

use std::cmp::Ordering;
use std::collections::HashMap;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::chnative::{key_cell, string, varint, version_bytes};
use crate::upserts::Fast;

/// A column type of the state table, as the Native block names it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Type {
    Nullable(Box<Type>),
    Array(Box<Type>),
    String,
    /// Signed integer of this many bytes (`Date32` and `DateTime64` order the same way).
    Int(usize),
    /// Unsigned integer of this many bytes (`Bool` too).
    UInt(usize),
    Float32,
    Float64,
    Uuid,
}

impl Type {
    fn parse(name: &str) -> Result<Self, String> {
        let inner = |prefix: &str| name.strip_prefix(prefix).and_then(|rest| rest.strip_suffix(')'));
        if let Some(inner) = inner("Nullable(") {
            return Ok(Self::Nullable(Box::new(Self::parse(inner)?)));
        }
        if let Some(inner) = inner("Array(") {
            return Ok(Self::Array(Box::new(Self::parse(inner)?)));
        }
        Ok(match name {
            "String" => Self::String,
            "Int8" => Self::Int(1),
            "Int16" => Self::Int(2),
            "Int32" | "Date32" => Self::Int(4),
            "Int64" => Self::Int(8),
            "UInt8" | "Bool" => Self::UInt(1),
            "UInt256" => Self::UInt(32),
            "Float32" => Self::Float32,
            "Float64" => Self::Float64,
            "UUID" => Self::Uuid,
            _ if name.starts_with("DateTime64(") => Self::Int(8),
            _ => return Err(format!("no Native reader for ClickHouse type {name:?}")),
        })
    }

    fn width(&self) -> Option<usize> {
        match self {
            Self::Int(width) | Self::UInt(width) => Some(*width),
            Self::Float32 => Some(4),
            Self::Float64 => Some(8),
            Self::Uuid => Some(16),
            Self::String | Self::Nullable(_) | Self::Array(_) => None,
        }
    }
}

/// One column of a parsed block: where each row's bytes are.
enum Data<'a> {
    Fixed {
        width: usize,
        bytes: &'a [u8],
    },
    /// Per row: (start of the length prefix, start of the text, end).
    Str {
        spans: Vec<(usize, usize, usize)>,
        bytes: &'a [u8],
    },
    Nullable {
        nulls: &'a [u8],
        inner: Box<Data<'a>>,
    },
    /// Per row: the end of its elements in `inner`.
    Array {
        ends: Vec<usize>,
        inner: Box<Data<'a>>,
    },
}

impl<'a> Data<'a> {
    fn read(kind: &Type, rows: usize, input: &mut Input<'a>) -> Result<Self, String> {
        Ok(match kind {
            Type::Nullable(inner) => {
                let nulls = input.take(rows)?;
                Self::Nullable { nulls, inner: Box::new(Self::read(inner, rows, input)?) }
            }
            Type::Array(inner) => {
                let mut ends = Vec::with_capacity(rows);
                for _ in 0..rows {
                    let end = u64::from_le_bytes(input.take(8)?.try_into().expect("8 bytes"));
                    ends.push(usize::try_from(end).map_err(|_| "array offset out of range")?);
                }
                let total = ends.last().copied().unwrap_or(0);
                Self::Array { ends, inner: Box::new(Self::read(inner, total, input)?) }
            }
            Type::String => {
                let start = input.at;
                let mut spans = Vec::with_capacity(rows);
                for _ in 0..rows {
                    let prefix = input.at - start;
                    let length = usize::try_from(input.varint()?).map_err(|_| "string length out of range")?;
                    let text = input.at - start;
                    input.take(length)?;
                    spans.push((prefix, text, input.at - start));
                }
                Self::Str { spans, bytes: &input.bytes[start..input.at] }
            }
            fixed => {
                let width = fixed.width().expect("a fixed-width type");
                Self::Fixed { width, bytes: input.take(rows * width)? }
            }
        })
    }

    /// The row's bytes as the block holds them (a string with its length prefix).
    fn raw(&self, row: usize) -> &'a [u8] {
        match self {
            Self::Fixed { width, bytes } => &bytes[row * width..(row + 1) * width],
            Self::Str { spans, bytes } => &bytes[spans[row].0..spans[row].2],
            Self::Nullable { .. } | Self::Array { .. } => unreachable!("keys are plain values"),
        }
    }

    fn range(ends: &[usize], row: usize) -> (usize, usize) {
        (if row == 0 { 0 } else { ends[row - 1] }, ends[row])
    }

    /// Whether the row holds no value: NULL, or `[]` for an array (vectors are never empty).
    fn absent(&self, row: usize) -> bool {
        match self {
            Self::Nullable { nulls, .. } => nulls[row] != 0,
            Self::Array { ends, .. } => {
                let (start, end) = Self::range(ends, row);
                start == end
            }
            Self::Fixed { .. } | Self::Str { .. } => false,
        }
    }

    /// An `Int64` or `Nullable(Int64)` cell.
    #[inline]
    fn int64(&self, row: usize) -> Option<i64> {
        let data = match self {
            Self::Nullable { nulls, inner } if nulls[row] == 0 => inner.as_ref(),
            Self::Nullable { .. } => return None,
            plain => plain,
        };
        match data {
            Self::Fixed { width: 8, bytes } => {
                Some(i64::from_le_bytes(bytes[row * 8..row * 8 + 8].try_into().expect("8 bytes")))
            }
            _ => None,
        }
    }
}

/// A cursor over one Native block stream.
struct Input<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Input<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(count).filter(|&end| end <= self.bytes.len()).ok_or("Native block ends early")?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.take(1)?[0];
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("Native varint too long".into())
    }

    fn text(&mut self) -> Result<&'a str, String> {
        let length = usize::try_from(self.varint()?).map_err(|_| "name length out of range")?;
        std::str::from_utf8(self.take(length)?).map_err(|_| "Native name is not UTF-8".into())
    }
}

/// One parsed block: its rows and, per column, its type and data.
struct Block<'a> {
    rows: usize,
    columns: Vec<(Type, Data<'a>)>,
}

/// Parses a Native stream (one block or several, as a query result may be) whose columns must be
/// `expected` (names), in order; returns the blocks and each column's type.
fn blocks<'a>(bytes: &'a [u8], expected: &[&str]) -> Result<Vec<Block<'a>>, String> {
    let mut input = Input { bytes, at: 0 };
    let mut out = Vec::new();
    while input.at < bytes.len() {
        let count = usize::try_from(input.varint()?).map_err(|_| "column count out of range")?;
        let rows = usize::try_from(input.varint()?).map_err(|_| "row count out of range")?;
        if count != expected.len() {
            return Err(format!("Native block has {count} columns, expected {}", expected.len()));
        }
        let mut columns = Vec::with_capacity(count);
        for name in expected {
            let found = input.text()?;
            if found != *name {
                return Err(format!("Native block has column {found:?} where {name:?} belongs"));
            }
            let kind = Type::parse(input.text()?)?;
            let data = Data::read(&kind, rows, &mut input)?;
            columns.push((kind, data));
        }
        out.push(Block { rows, columns });
    }
    Ok(out)
}

/// `blocks` of the state table's columns at `columns` (indexes into `names`/`types`), each
/// column's type checked against the table's.
fn checked_blocks<'a>(
    bytes: &'a [u8],
    names: &[&str],
    columns: &[usize],
    types: &[Type],
) -> Result<Vec<Block<'a>>, String> {
    let expected: Vec<&str> = columns.iter().map(|&i| names[i]).collect();
    let parsed = blocks(bytes, &expected)?;
    for block in &parsed {
        for ((kind, _), &target) in block.columns.iter().zip(columns) {
            if *kind != types[target] {
                let wanted = &types[target];
                return Err(format!("column {} is {kind:?} in a block, {wanted:?} in the table", names[target]));
            }
        }
    }
    Ok(parsed)
}

/// One output column being filled with rows copied from parsed blocks.
enum Builder {
    Fixed(Vec<u8>),
    Str(Vec<u8>),
    Nullable { nulls: Vec<u8>, inner: Box<Builder> },
    Array { ends: Vec<u64>, inner: Box<Builder> },
}

impl Builder {
    /// An empty column of `kind` with room for `rows` rows.
    fn new(kind: &Type, rows: usize) -> Self {
        match kind {
            Type::Nullable(inner) => {
                Self::Nullable { nulls: Vec::with_capacity(rows), inner: Box::new(Self::new(inner, rows)) }
            }
            Type::Array(inner) => {
                Self::Array { ends: Vec::with_capacity(rows), inner: Box::new(Self::new(inner, rows)) }
            }
            Type::String => Self::Str(Vec::with_capacity(rows * 16)),
            fixed => Self::Fixed(Vec::with_capacity(rows * fixed.width().unwrap_or(8))),
        }
    }

    /// Appends the given cells, in order: one type dispatch per column, not per cell.
    fn gather(&mut self, cells: &[(&Data<'_>, usize)]) {
        match self {
            Self::Fixed(out) => {
                for &(data, row) in cells {
                    let Data::Fixed { width, bytes } = data else { unreachable!("checked types") };
                    out.extend_from_slice(&bytes[row * width..(row + 1) * width]);
                }
            }
            Self::Str(out) => {
                for &(data, row) in cells {
                    let Data::Str { spans, bytes } = data else { unreachable!("checked types") };
                    out.extend_from_slice(&bytes[spans[row].0..spans[row].2]);
                }
            }
            Self::Nullable { nulls, inner } => {
                let mut values = Vec::with_capacity(cells.len());
                for &(data, row) in cells {
                    let Data::Nullable { nulls: from, inner: data } = data else { unreachable!("checked types") };
                    nulls.push(from[row]);
                    values.push((data.as_ref(), row));
                }
                inner.gather(&values);
            }
            Self::Array { .. } => {
                for &(data, row) in cells {
                    self.copy(data, row);
                }
            }
        }
    }

    fn copy(&mut self, data: &Data<'_>, row: usize) {
        match (self, data) {
            (Self::Fixed(out), Data::Fixed { width, bytes }) => {
                let at = row * width;
                // Constant-size copies for the common widths: no memmove call per value.
                match width {
                    1 => out.push(bytes[at]),
                    4 => out.extend_from_slice(&<[u8; 4]>::try_from(&bytes[at..at + 4]).expect("4 bytes")),
                    8 => out.extend_from_slice(&<[u8; 8]>::try_from(&bytes[at..at + 8]).expect("8 bytes")),
                    _ => out.extend_from_slice(&bytes[at..at + width]),
                }
            }
            (Self::Str(out), Data::Str { spans, bytes }) => out.extend_from_slice(&bytes[spans[row].0..spans[row].2]),
            (Self::Nullable { nulls, inner }, Data::Nullable { nulls: from, inner: data }) => {
                nulls.push(from[row]);
                inner.copy(data, row);
            }
            (Self::Array { ends, inner }, Data::Array { ends: from, inner: data }) => {
                let (start, end) = Data::range(from, row);
                for element in start..end {
                    inner.copy(data, element);
                }
                ends.push(ends.last().copied().unwrap_or(0) + (end - start) as u64);
            }
            _ => unreachable!("the blocks' types were checked against the state table's"),
        }
    }

    fn size(&self) -> usize {
        match self {
            Self::Fixed(data) | Self::Str(data) => data.len(),
            Self::Nullable { nulls, inner } => nulls.len() + inner.size(),
            Self::Array { ends, inner } => ends.len() * 8 + inner.size(),
        }
    }

    fn fixed(&mut self, bytes: &[u8]) {
        match self {
            Self::Fixed(out) => out.extend_from_slice(bytes),
            _ => unreachable!("a fixed-width meta column"),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Self::Fixed(data) | Self::Str(data) => out.extend_from_slice(data),
            Self::Nullable { nulls, inner } => {
                out.extend_from_slice(nulls);
                inner.write(out);
            }
            Self::Array { ends, inner } => {
                for end in ends {
                    out.extend_from_slice(&end.to_le_bytes());
                }
                inner.write(out);
            }
        }
    }
}

/// The order of two present values of one type, as Python orders the values the sink stores
/// (`changes.TieOrder`); None where that order is not ClickHouse's (NaN).
fn compare(kind: &Type, a: &Data<'_>, i: usize, b: &Data<'_>, j: usize) -> Option<Ordering> {
    match (kind, a, b) {
        (Type::Nullable(inner), Data::Nullable { inner: a, .. }, Data::Nullable { inner: b, .. }) => {
            compare(inner, a, i, b, j)
        }
        (Type::Array(inner), Data::Array { ends: ea, inner: a }, Data::Array { ends: eb, inner: b }) => {
            let ((sa, ta), (sb, tb)) = (Data::range(ea, i), Data::range(eb, j));
            for (x, y) in (sa..ta).zip(sb..tb) {
                match compare(inner, a, x, b, y)? {
                    Ordering::Equal => {}
                    other => return Some(other),
                }
            }
            Some((ta - sa).cmp(&(tb - sb)))
        }
        (Type::String, Data::Str { spans: pa, bytes: ba }, Data::Str { spans: pb, bytes: bb }) => {
            Some(ba[pa[i].1..pa[i].2].cmp(&bb[pb[j].1..pb[j].2]))
        }
        (_, Data::Fixed { .. }, Data::Fixed { .. }) => {
            let (x, y) = (a.raw(i), b.raw(j));
            match kind {
                Type::Int(_) => Some(signed(x).cmp(&signed(y))),
                Type::UInt(_) => Some(x.iter().rev().cmp(y.iter().rev())),
                Type::Float32 => {
                    f32::from_le_bytes(x.try_into().ok()?).partial_cmp(&f32::from_le_bytes(y.try_into().ok()?))
                }
                Type::Float64 => {
                    f64::from_le_bytes(x.try_into().ok()?).partial_cmp(&f64::from_le_bytes(y.try_into().ok()?))
                }
                // Two little-endian UInt64 halves, the high one first: (high, low) is the number.
                Type::Uuid => Some(
                    (u64::from_le_bytes(x[..8].try_into().ok()?), u64::from_le_bytes(x[8..].try_into().ok()?)).cmp(&(
                        u64::from_le_bytes(y[..8].try_into().ok()?),
                        u64::from_le_bytes(y[8..].try_into().ok()?),
                    )),
                ),
                _ => None,
            }
        }
        _ => None,
    }
}

fn signed(bytes: &[u8]) -> i128 {
    let mut wide = [if bytes.last().is_some_and(|&b| b & 0x80 != 0) { 0xff } else { 0 }; 16];
    wide[..bytes.len()].copy_from_slice(bytes);
    i128::from_le_bytes(wide)
}

/// `(tombstone, has expiry, expiry)`: the tie-break's parts before the value (`flat._tie_wins`).
fn rank(absent: bool, exp: Option<i64>) -> (bool, bool, i64) {
    (absent, exp.is_some(), exp.unwrap_or(0))
}

/// `_version` bytes (UInt256, little-endian) as a comparable (high, low) pair.
fn version_of(bytes: &[u8]) -> (u128, u128) {
    let low = u128::from_le_bytes(bytes[..16].try_into().expect("16 bytes"));
    let high = u128::from_le_bytes(bytes[16..32].try_into().expect("16 bytes"));
    (high, low)
}

fn version_to_bytes((high, low): (u128, u128)) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[..16].copy_from_slice(&low.to_le_bytes());
    out[16..].copy_from_slice(&high.to_le_bytes());
    out
}

/// Where a merged row's cell comes from.
#[derive(Clone, Copy)]
enum From {
    Delta,
    Stored,
}

/// Merges one table's staged deltas into its stored states (`flat.FlatRows.merge`, on Native blocks).
#[pyclass(module = "headrace_native", frozen)]
pub struct ChMerger {
    keys: usize,
    cells: usize,
    /// The state table's columns, in insert order: names, type names (for the output block's
    /// header) and the parsed types.
    names: Vec<String>,
    type_names: Vec<String>,
    types: Vec<Type>,
}

#[pymethods]
impl ChMerger {
    /// `keys`: primary-key column count; `columns`: the state table's `(name, type)` pairs, in
    /// `TableSql.state_columns` order (keys, `value, __ts, __exp` per column, then `_live_ts,
    /// _live_exp, _del_ts, _version, is_deleted`).
    #[new]
    fn new(keys: usize, columns: Vec<(String, String)>) -> PyResult<Self> {
        let cells = columns.len().checked_sub(keys + 5).filter(|n| n % 3 == 0).ok_or_else(|| {
            PyValueError::new_err(format!(
                "{} state columns do not fit {keys} keys, 3 per cell and 5 meta",
                columns.len()
            ))
        })? / 3;
        let types = columns.iter().map(|(_, kind)| Type::parse(kind)).collect::<Result<_, _>>();
        let types = types.map_err(PyValueError::new_err)?;
        let (names, type_names) = columns.into_iter().unzip();
        Ok(Self { keys, cells, names, type_names, types })
    }

    /// `(block, rows)`: the changed whole rows as a Native block of the state columns, or None
    /// when an equal-writetime tie needs an order only Python has (merge that batch in Python).
    /// A block that does not fit the state table raises RuntimeError.
    /// `deltas`: a `ChStageEncoder` block (distinct keys); `stored`: the newest stored state of
    /// (some of) those keys, at most one row per key, as a Native result stream.
    fn merge<'py>(
        &self,
        py: Python<'py>,
        deltas: &[u8],
        stored: &[u8],
    ) -> PyResult<Option<(Bound<'py, PyBytes>, usize)>> {
        let merged = py.detach(|| self.merge_blocks(deltas, stored)).map_err(PyRuntimeError::new_err)?;
        Ok(merged.map(|(block, rows)| (PyBytes::new(py, &block), rows)))
    }
}

impl ChMerger {
    fn merge_blocks(&self, deltas: &[u8], stored: &[u8]) -> Result<Option<(Vec<u8>, usize)>, String> {
        let names: Vec<&str> = self.names.iter().map(String::as_str).collect();
        let width = names.len();
        // The deltas lack `_del_ts` and `is_deleted`, the stored states `is_deleted`.
        let delta_columns: Vec<usize> = (0..width - 3).chain([width - 2]).collect();
        let stored_columns: Vec<usize> = (0..width - 1).collect();
        let types = &self.types;
        let deltas = checked_blocks(deltas, &names, &delta_columns, types)?;
        let stored = checked_blocks(stored, &names, &stored_columns, types)?;
        let mut index: HashMap<Vec<u8>, (usize, usize), Fast> =
            HashMap::with_capacity_and_hasher(stored.iter().map(|b| b.rows).sum(), Fast);
        let mut key = Vec::new();
        for (number, block) in stored.iter().enumerate() {
            for row in 0..block.rows {
                self.key_bytes(block, row, types, &mut key);
                index.entry(key.clone()).or_insert((number, row));
            }
        }
        // Decide every row first, then fill the output a column at a time: one type dispatch per
        // column instead of per cell.
        let mut picks: Vec<Pick> = Vec::new();
        let mut all_sources: Vec<From> = Vec::new();
        let mut sources = vec![From::Delta; self.cells];
        let mut scratch = Vec::with_capacity(self.cells);
        for (number, block) in deltas.iter().enumerate() {
            for row in 0..block.rows {
                self.key_bytes(block, row, types, &mut key);
                let found = index.get(&key).copied();
                let stored_row = found.map(|(number, at)| (&stored[number], at));
                match self.merge_row(block, row, stored_row, types, &mut sources, &mut scratch) {
                    Decision::Unchanged => {}
                    Decision::Decline => return Ok(None),
                    Decision::Changed(merged) => {
                        all_sources.extend_from_slice(&sources);
                        picks.push(Pick { delta: (number, row), stored: found, merged });
                    }
                }
            }
        }
        let rows = picks.len();
        let k = self.keys;
        let live_at = k + 3 * self.cells;
        let mut out: Vec<Builder> = types.iter().map(|kind| Builder::new(kind, rows)).collect();
        let mut cells = Vec::with_capacity(rows);
        for (index, builder) in out.iter_mut().enumerate().take(live_at + 2) {
            cells.clear();
            cells.extend(picks.iter().enumerate().map(|(n, pick)| {
                let source = match index {
                    _ if index < k => From::Delta,
                    _ if index < live_at => all_sources[n * self.cells + (index - k) / 3],
                    _ => pick.merged.live,
                };
                match (source, pick.stored) {
                    (From::Stored, Some((number, at))) => (&stored[number].columns[index].1, at),
                    _ => (&deltas[pick.delta.0].columns[index].1, pick.delta.1),
                }
            }));
            builder.gather(&cells);
        }
        for pick in &picks {
            let merged = &pick.merged;
            out[live_at + 2].fixed(&merged.deleted.to_le_bytes());
            out[live_at + 3].fixed(&version_to_bytes(merged.version));
            out[live_at + 4].fixed(&[u8::from(!merged.alive)]);
        }
        let mut block = Vec::with_capacity(out.iter().map(|c| c.size() + 64).sum());
        varint(&mut block, width as u64);
        varint(&mut block, rows as u64);
        for ((name, kind), column) in self.names.iter().zip(&self.type_names).zip(&out) {
            string(&mut block, name.as_bytes());
            string(&mut block, kind.as_bytes());
            column.write(&mut block);
        }
        Ok(Some((block, rows)))
    }

    /// The key's bytes, `-0.0` written as `0.0` (one key to ClickHouse).
    fn key_bytes(&self, block: &Block<'_>, row: usize, types: &[Type], out: &mut Vec<u8>) {
        out.clear();
        for (kind, (_, data)) in types.iter().zip(&block.columns).take(self.keys) {
            key_cell(matches!(kind, Type::Float32 | Type::Float64), data.raw(row), out);
        }
    }

    /// Decides one delta row against its stored state (None: a new key): each cell's source (into
    /// `sources`), the liveness's source, `_del_ts`, `_version` and whether the row is alive.
    fn merge_row(
        &self,
        delta: &Block<'_>,
        row: usize,
        stored: Option<(&Block<'_>, usize)>,
        types: &[Type],
        sources: &mut [From],
        scratch: &mut Vec<(i64, bool, Option<i64>)>,
    ) -> Decision {
        let k = self.keys;
        let live_at = k + 3 * self.cells;
        let d = &delta.columns;
        let mut live = From::Delta;
        let mut deleted = i64::MIN;
        let mut floor = None; // a changed state's version is at least the stored one plus one
        if let Some((stored, s_row)) = stored {
            let s = &stored.columns;
            let mut changed = false;
            for (cell, source) in sources.iter_mut().enumerate() {
                let (value, ts, exp) = (k + 3 * cell, k + 3 * cell + 1, k + 3 * cell + 2);
                *source = From::Stored;
                let Some(new_ts) = d[ts].1.int64(row) else { continue };
                let wins = match s[ts].1.int64(s_row) {
                    None => true,
                    Some(old_ts) if new_ts != old_ts => new_ts > old_ts,
                    Some(_) => {
                        let (new_absent, old_absent) = (d[value].1.absent(row), s[value].1.absent(s_row));
                        let new_rank = rank(new_absent, d[exp].1.int64(row));
                        match new_rank.cmp(&rank(old_absent, s[exp].1.int64(s_row))) {
                            Ordering::Equal if new_absent || d[value].1.raw_equal(row, &s[value].1, s_row) => false,
                            Ordering::Equal => match compare(&types[value], &d[value].1, row, &s[value].1, s_row) {
                                Some(order) => order == Ordering::Greater,
                                None => return Decision::Decline,
                            },
                            order => order == Ordering::Greater,
                        }
                    }
                };
                if wins {
                    *source = From::Delta;
                    changed = true;
                }
            }
            live = From::Stored;
            if let Some(new_live) = d[live_at].1.int64(row) {
                let wins = match s[live_at].1.int64(s_row) {
                    None => true,
                    Some(old) if old != new_live => new_live > old,
                    Some(_) => {
                        let (new_exp, old_exp) = (d[live_at + 1].1.int64(row), s[live_at + 1].1.int64(s_row));
                        (new_exp.is_some(), new_exp.unwrap_or(0)) > (old_exp.is_some(), old_exp.unwrap_or(0))
                    }
                };
                if wins {
                    live = From::Delta;
                    changed = true;
                }
            }
            if !changed {
                return Decision::Unchanged;
            }
            deleted = s[live_at + 2].1.int64(s_row).unwrap_or(i64::MIN);
            let (high, low) = version_of(s[live_at + 3].1.raw(s_row));
            let (low, carry) = low.overflowing_add(1);
            floor = Some((high + u128::from(carry), low));
        } else {
            sources.fill(From::Delta);
        }
        let column = |source: From, index: usize| {
            let (data, at) = cell(source, delta, row, stored, index);
            data.int64(at)
        };
        let absent = |source: From, index: usize| {
            let (data, at) = cell(source, delta, row, stored, index);
            data.absent(at)
        };
        let liveness = column(live, live_at).map(|ts| (ts, column(live, live_at + 1)));
        let mut alive = liveness.is_some_and(|(ts, _)| ts > deleted);
        let cells = scratch;
        cells.clear();
        for (cell, &source) in sources.iter().enumerate() {
            let Some(ts) = column(source, k + 3 * cell + 1) else { continue };
            let missing = absent(source, k + 3 * cell);
            alive |= !missing && ts > deleted;
            cells.push((ts, missing, column(source, k + 3 * cell + 2)));
        }
        let own = version_of(&version_bytes(deleted, liveness, cells.iter().copied()));
        let version = floor.map_or(own, |floor| own.max(floor));
        Decision::Changed(Merged { deleted, live, version, alive })
    }
}

/// Column `index` of the merged row's `source`: the delta's row, or the stored state's.
fn cell<'b, 'a>(
    source: From,
    delta: &'b Block<'a>,
    row: usize,
    stored: Option<(&'b Block<'a>, usize)>,
    index: usize,
) -> (&'b Data<'a>, usize) {
    match (source, stored) {
        (From::Stored, Some((block, at))) => (&block.columns[index].1, at),
        _ => (&delta.columns[index].1, row),
    }
}

/// A changed row: its delta `(block, row)`, its stored state's, and the merged parts.
struct Pick {
    delta: (usize, usize),
    stored: Option<(usize, usize)>,
    merged: Merged,
}

/// What one delta row does to its stored state.
enum Decision {
    Unchanged,
    Changed(Merged),
    /// An equal-writetime tie between values only Python orders (NaN): merge the batch in Python.
    Decline,
}

/// A changed row's parts besides its cells.
struct Merged {
    deleted: i64,
    live: From,
    version: (u128, u128),
    alive: bool,
}

impl Data<'_> {
    /// Whether two present values have the same bytes (the same value: no tie to break).
    fn raw_equal(&self, row: usize, other: &Data<'_>, other_row: usize) -> bool {
        match (self, other) {
            (Self::Nullable { inner: a, .. }, Data::Nullable { inner: b, .. }) => a.raw_equal(row, b, other_row),
            (Self::Array { ends: ea, inner: a }, Data::Array { ends: eb, inner: b }) => {
                let ((sa, ta), (sb, tb)) = (Data::range(ea, row), Data::range(eb, other_row));
                ta - sa == tb - sb && (sa..ta).zip(sb..tb).all(|(x, y)| a.raw_equal(x, b, y))
            }
            _ => self.raw(row) == other.raw(other_row),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Data, Input, Type, blocks, signed};

    #[test]
    fn types_parse_through_wrappers() {
        let datetime = Type::parse("Nullable(DateTime64(3, 'UTC'))");
        assert_eq!(datetime, Ok(Type::Nullable(Box::new(Type::Int(8)))));
        assert_eq!(Type::parse("Array(Float32)"), Ok(Type::Array(Box::new(Type::Float32))));
        assert_eq!(Type::parse("Bool"), Ok(Type::UInt(1)));
        assert!(Type::parse("Map(String, String)").is_err());
    }

    #[test]
    fn signed_values_extend_their_sign() {
        assert_eq!(signed(&[0xff]), -1);
        assert_eq!(signed(&(-300i32).to_le_bytes()), -300);
        assert_eq!(signed(&i64::MAX.to_le_bytes()), i128::from(i64::MAX));
        assert!(signed(&(-1i16).to_le_bytes()) < signed(&1i16.to_le_bytes()));
    }

    #[test]
    fn strings_keep_their_length_prefix_and_text() {
        let bytes = [2, b'a', b'b', 0, 1, b'c'];
        let data = Data::read(&Type::String, 3, &mut Input { bytes: &bytes, at: 0 }).unwrap();
        assert_eq!(data.raw(0), &[2, b'a', b'b']);
        assert_eq!(data.raw(1), &[0]);
        assert_eq!(data.raw(2), &[1, b'c']);
    }

    #[test]
    fn a_short_block_is_an_error_not_a_panic() {
        // one column, two rows of Int64, but only one value present
        let mut bytes = vec![1, 2, 1, b'x', 5];
        bytes.extend_from_slice(b"Int64");
        bytes.extend_from_slice(&7i64.to_le_bytes());
        assert_eq!(blocks(&bytes, &["x"]).err().as_deref(), Some("Native block ends early"));
        assert!(blocks(&bytes, &["y"]).err().is_some_and(|e| e.contains("\"x\"")));
    }
}
