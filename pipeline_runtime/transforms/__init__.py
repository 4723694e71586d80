"""Transforms between the source and the sinks: selection, renames, masking, validation.

``Transformer`` is the entry point; masking rules and the personal-data
policy come from ``TransformSpec``; see chain.py for the order of steps.
"""

from pipeline_runtime.transforms.chain import TablePlan, Transformer
from pipeline_runtime.transforms.masking import Masker, read_hash_key
from pipeline_runtime.transforms.validation import Finding, looks_personal

__all__ = ["Finding", "Masker", "TablePlan", "Transformer", "looks_personal", "read_hash_key"]
