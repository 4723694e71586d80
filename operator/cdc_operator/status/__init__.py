"""Pure status logic: from what the operator observed to phase, conditions and summary fields."""
