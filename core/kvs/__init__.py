"""The key-value store: hierarchical keys, namespaces, transactions, watches (SPEC 5).

- `treeobj`: RFC 11 tree objects, key normalization, flag values
- `tree`: the in-memory tree of a namespace and atomic transactions on it
- `store`: SQLite persistence (group commit, chunked appends)
- `service`: the `kvs` and `kvs-watch` services and the in-broker API (`broker.kvs`)
- `content`: the `content` service (blobs by hash)
- `ops`: op builders for in-broker callers
"""
