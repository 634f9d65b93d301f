"""Reusable pytest fixtures that start real services (Redis, SeaweedFS S3) on private loopback ports.

Use them from a conftest.py with `pytest_plugins = ["tests.support.fixtures"]` or import the
context managers (`redis_server`, `seaweedfs_s3`) directly.
"""
