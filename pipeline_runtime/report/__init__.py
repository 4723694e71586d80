"""Reporting the runtime's state back onto its CDCPipeline resource."""
