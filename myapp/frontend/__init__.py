"""The frontend role: server-rendered Flask pages. Reaches data only over HTTP to the backend.

Never imports myapp.backend or duckdb (a test checks it).
"""
