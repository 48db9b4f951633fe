"""The `content` service (RFC 10): blobs addressed by hash, kept in the KVS's SQLite file.

`content.store` takes a raw blob and answers its blobref (`sha1-<hex>`) once the blob
is on disk; `content.load` takes a blobref and answers the raw blob. Owner only:
guests have no access (SPEC 5.1). Other ranks have no content service, so their
requests go upstream to rank 0.
"""

from __future__ import annotations

import errno
import re

from flux.core.broker.service import NOREPLY, Service, method
from flux.core.errors import FluxError

_REF = re.compile(r"^(sha1|sha256)-[0-9a-f]+$")


def _raw(msg) -> bytes:
    p = msg.payload
    if p is None:
        return b""
    if isinstance(p, str):
        return p.encode()
    if isinstance(p, bytes | bytearray | memoryview):
        return bytes(p)
    raise FluxError(errno.EPROTO, f"{msg.topic}: payload must be raw bytes")


class ContentService(Service):
    name = "content"

    def __init__(self, broker, kvs):
        super().__init__(broker)
        self.kvs = kvs

    @method("load", owner_only=True)
    def load(self, msg):
        ref = _raw(msg).rstrip(b"\0").decode(errors="replace")
        if not _REF.match(ref):
            raise FluxError(errno.EPROTO, f"content.load: {ref[:80]!r} is not a blobref")
        return self.kvs.content_load(ref)

    @method("store", owner_only=True)
    def store(self, msg):
        data = _raw(msg)

        def done(exc):
            if exc is not None:
                self.respond_error(msg, exc.errno, exc.strerror)
            else:
                self.respond(msg, ref)

        ref = self.kvs.content_store(data, done)
        return NOREPLY
