"""ingest-feasibility: reject requests the instance's scheduler can never satisfy."""
