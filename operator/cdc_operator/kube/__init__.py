"""A small asyncio client for the few Kubernetes calls the operator makes.

Kopf brings aiohttp and the login (``kopf.ConnectionInfo``); the official
client would add a synchronous, thread-bound layer for about ten calls.
"""
