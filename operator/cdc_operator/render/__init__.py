"""Pure renderers: a pipeline spec and its Cassandra pods in, Kubernetes objects out.

Nothing here talks to the API server, reads the clock or the environment: the
same inputs give byte-identical objects, which is what the golden files and
the handlers' idempotent apply rely on.
"""

from cdc_operator.render.context import PipelineRef
from cdc_operator.render.pipeline import RenderedPipeline, render_pipeline

__all__ = ["PipelineRef", "RenderedPipeline", "render_pipeline"]
