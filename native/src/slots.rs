//! Reading the fields of the event dataclasses where `__slots__` keeps them.
//!
//! The change events (`pipeline_runtime/events.py`) are `@dataclass(slots=True)` classes: each
//! field is a member descriptor that keeps one object pointer at a fixed offset inside the
//! instance. `getattr` finds that descriptor through the type's dictionary and calls it, for every
//! field of every cell; that lookup was a fifth of the encoders' time. A `Field` reads the pointer
//! at the offset directly, for instances of exactly the class it was made for; anything else (a
//! subclass, an unset slot, a class without slots) takes `getattr`, so the result is the same.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyType};

/// One field of one class, read by its slot offset where that is safe.
pub struct Field {
    class: Py<PyType>,
    name: Py<PyString>,
    /// Byte offset of the object pointer in an instance; None when the field is not a plain slot.
    offset: Option<isize>,
}

impl Field {
    /// The field `name` of `class`.
    pub fn new(class: &Bound<'_, PyType>, name: &str) -> PyResult<Self> {
        let py = class.py();
        let descriptor = class.getattr(name)?;
        let member_type = std::ptr::addr_of_mut!(ffi::PyMemberDescr_Type);
        let offset = if descriptor.get_type_ptr() == member_type {
            // SAFETY: an object of type member_descriptor is a PyMemberDescrObject, whose d_member
            // points at the class's static PyMemberDef for the lifetime of the class.
            let member = unsafe { &*(*descriptor.as_ptr().cast::<ffi::PyMemberDescrObject>()).d_member };
            (member.type_code == ffi::Py_T_OBJECT_EX).then_some(member.offset)
        } else {
            None
        };
        Ok(Self { class: class.clone().unbind(), name: PyString::intern(py, name).unbind(), offset })
    }

    /// Whether `object` is an instance of exactly this field's class.
    #[inline]
    pub fn owns(&self, object: &Bound<'_, PyAny>) -> bool {
        object.get_type_ptr() == self.class.as_ptr().cast::<ffi::PyTypeObject>()
    }

    /// `object.<name>`.
    #[inline]
    pub fn get<'py>(&self, object: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = object.py();
        if let Some(offset) = self.offset
            && self.owns(object)
        {
            // SAFETY: `object` is an instance of exactly `class` (kept alive by `self.class`), so
            // its layout has the slot at `offset`: an owned pointer or NULL when never set.
            let item = unsafe { *object.as_ptr().cast::<u8>().offset(offset).cast::<*mut ffi::PyObject>() };
            if !item.is_null() {
                // SAFETY: a live object the instance holds a reference to; we take our own.
                return Ok(unsafe { Bound::from_borrowed_ptr(py, item) });
            }
        }
        object.getattr(self.name.bind(py))
    }

    /// Whether this field is read by offset (for tests).
    #[cfg(test)]
    pub fn direct(&self) -> bool {
        self.offset.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::Field;
    use pyo3::prelude::*;
    use pyo3::types::{PyDict, PyType};

    fn classes(py: Python<'_>) -> Bound<'_, PyDict> {
        let code = c"
from dataclasses import dataclass
@dataclass(slots=True)
class Slotted:
    a: object
    b: object = None
class Sub(Slotted):
    pass
class Plain:
    def __init__(self):
        self.a = 'plain'
";
        let globals = PyDict::new(py);
        py.run(code, Some(&globals), None).unwrap();
        globals
    }

    #[test]
    fn reads_slots_and_falls_back_to_getattr() {
        Python::initialize();
        Python::attach(|py| {
            let globals = classes(py);
            let slotted = globals.get_item("Slotted").unwrap().unwrap().cast_into::<PyType>().unwrap();
            let field = Field::new(&slotted, "a").unwrap();
            assert!(field.direct());
            let one = slotted.call1((41,)).unwrap();
            assert_eq!(field.get(&one).unwrap().extract::<i64>().unwrap(), 41);
            // A subclass instance and an unrelated object take getattr and give the same answers.
            let sub = globals.get_item("Sub").unwrap().unwrap().call1(("sub",)).unwrap();
            assert_eq!(field.get(&sub).unwrap().extract::<String>().unwrap(), "sub");
            let plain = globals.get_item("Plain").unwrap().unwrap().call0().unwrap();
            assert_eq!(field.get(&plain).unwrap().extract::<String>().unwrap(), "plain");
            // An unset slot raises AttributeError, as getattr does.
            let empty = slotted.call_method1("__new__", (&slotted,)).unwrap();
            assert!(field.get(&empty).unwrap_err().is_instance_of::<pyo3::exceptions::PyAttributeError>(py));
        });
    }
}
