"""The contracts between ob-takeover's parts: the request, the topology, activity messages, the task JSON,
the subtask table and the error tree.

This package depends on pydantic and the standard library only. `workflows/` and `activities/` both
build on it and never on each other; the workflow sandbox passes it through.
"""
