//! Building instances of Python `__slots__` classes (the event dataclasses, `uuid.UUID`) field by field.
//!
//! Calling a dataclass costs about a microsecond per object, most of it in the generated `__init__`
//! (frozen dataclasses set each field through `object.__setattr__`). A mutation becomes some thirty
//! such objects, which alone would cap the decoder near 45,000 mutations/s. So instances are made the
//! way `object.__new__` makes them (the class's own `tp_alloc`) and each field is stored through the
//! class's own member descriptor (its `tp_descr_set`, what `object.__setattr__` ends up calling).
//! The result is indistinguishable from a constructed instance as long as the class runs no code of
//! its own at construction: [`SlotClass::new`] checks that (no `__new__`, no `__post_init__`, every
//! dataclass field named, every name a member descriptor of the class) and refuses the class otherwise.
//!
//! Built objects are taken out of the cyclic garbage collector's sight ([`untrack`]): events hold
//! no reference cycles (reference counting frees them), and a batch of them kept alive while the
//! sinks write it otherwise makes every collection walk it again. Profiled on a snapshot into
//! PostgreSQL, the collector took half of the process's time.

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyType};

/// A class whose instances are allocated and filled slot by slot, in a fixed field order.
pub struct SlotClass {
    ty: Py<PyType>,
    alloc: ffi::allocfunc,
    /// Member descriptors in field order, with the function that stores through them.
    fields: Vec<(Py<PyAny>, ffi::descrsetfunc)>,
}

impl SlotClass {
    /// Checks that `cls` can be built without running Python code and resolves its `fields`.
    ///
    /// For a dataclass, `fields` must name every dataclass field (a slot left empty would raise
    /// `AttributeError` on access).
    pub fn new(cls: &Bound<'_, PyType>, fields: &[&str]) -> PyResult<Self> {
        let py = cls.py();
        let refuse = |why: String| PyTypeError::new_err(format!("cannot build {} natively: {why}", cls_name(cls)));
        let object_new = py.get_type::<pyo3::types::PyAny>().getattr("__new__")?;
        if !cls.getattr("__new__")?.is(&object_new) {
            return Err(refuse("it defines __new__".into()));
        }
        if cls.hasattr("__post_init__")? {
            return Err(refuse("it defines __post_init__".into()));
        }
        if let Ok(declared) = cls.getattr("__dataclass_fields__") {
            let declared = declared.cast_into::<PyDict>()?;
            if declared.len() != fields.len() {
                return Err(refuse(format!("it has {} fields, the decoder fills {}", declared.len(), fields.len())));
            }
        }
        let member_type = py.import("types")?.getattr("MemberDescriptorType")?;
        let mut resolved = Vec::with_capacity(fields.len());
        for name in fields {
            let descriptor = cls
                .getattr("__dict__")?
                .get_item(name)
                .map_err(|_| refuse(format!("{name} is not one of its own slots")))?;
            if !descriptor.is_instance(&member_type)? {
                return Err(refuse(format!("{name} is not a slot")));
            }
            // SAFETY: `descriptor` is a live object; reading its type's slot table is always valid.
            let set = unsafe { (*ffi::Py_TYPE(descriptor.as_ptr())).tp_descr_set };
            let set = set.ok_or_else(|| refuse(format!("{name} cannot be set")))?;
            resolved.push((descriptor.unbind(), set));
        }
        // SAFETY: `cls` is a live type object; reading its slot table is always valid.
        let alloc = unsafe { (*cls.as_type_ptr()).tp_alloc };
        let alloc = alloc.ok_or_else(|| refuse("it has no tp_alloc".into()))?;
        Ok(Self { ty: cls.clone().unbind(), alloc, fields: resolved })
    }

    /// A new instance with `values` stored in the field order given to [`SlotClass::new`].
    pub fn build<'py, const N: usize>(
        &self,
        py: Python<'py>,
        values: [&Bound<'py, PyAny>; N],
    ) -> PyResult<Bound<'py, PyAny>> {
        assert_eq!(N, self.fields.len(), "field count of a native event class");
        // SAFETY: `tp_alloc(cls, 0)` is how `object.__new__` allocates: it returns a new reference to a
        // zeroed instance (tracked by the GC when the class is) or NULL with an exception set, which
        // `from_owned_ptr_or_err` turns into `Err`.
        let instance =
            unsafe { Bound::from_owned_ptr_or_err(py, (self.alloc)(self.ty.as_ptr().cast::<ffi::PyTypeObject>(), 0))? };
        for ((descriptor, set), value) in self.fields.iter().zip(values) {
            // SAFETY: `set` is the `tp_descr_set` of `descriptor`, a member descriptor of exactly this
            // class (checked in `new`), called with an instance of that class and a live value; it
            // type-checks the instance, takes its own reference to `value` and returns -1 with an
            // exception set on failure.
            if unsafe { set(descriptor.as_ptr(), instance.as_ptr(), value.as_ptr()) } != 0 {
                return Err(PyErr::fetch(py));
            }
        }
        untrack(&instance);
        Ok(instance)
    }
}

/// Takes `object` out of the cyclic garbage collector's sight (see the module's documentation); only
/// for objects of the data path, which never take part in a reference cycle. A dict that later
/// receives a container is tracked again by CPython itself.
pub fn untrack(object: &Bound<'_, PyAny>) {
    // SAFETY: `object` is live; `PyObject_IS_GC` reads its type's flags, and `PyObject_GC_UnTrack`
    // is safe on any GC object, tracked or not.
    unsafe {
        if ffi::PyObject_IS_GC(object.as_ptr()) != 0 {
            ffi::PyObject_GC_UnTrack(object.as_ptr().cast());
        }
    }
}

fn cls_name(cls: &Bound<'_, PyType>) -> String {
    cls.qualname().map(|n: Bound<'_, PyString>| n.to_string()).unwrap_or_else(|_| "a class".into())
}
