"""The CRD's OpenAPI schema, derived from the runtime's pydantic models."""
