"""ingest-jobspec: reject a submitted jobspec that is not a valid jobspec V1 (RFC 25)."""
