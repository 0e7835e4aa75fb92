"""The REST API for mobile apps, under /api/v1/ (docs/api.md).

Reads start from cases.permissions, writes go through cases.services; this
package adds only what HTTP needs: device tokens, idempotent creates,
throttling, size and content-type checks and one JSON error shape.
"""
