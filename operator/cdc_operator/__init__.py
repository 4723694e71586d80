"""Headrace operator: reconciles CDCPipeline resources into runtime Deployments."""
