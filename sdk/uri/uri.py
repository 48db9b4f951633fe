"""URI classes and the resolver front end (see the package docstring)."""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import socket
from urllib.parse import parse_qs, urlparse


class URI:
    """A parsed URI whose parts (scheme, netloc, path, query, ...) may be changed;
    `query_dict` maps query names to lists of values."""

    def __init__(self, uri: str):
        self.uri = uri
        parts = urlparse(uri)
        self.scheme, self.netloc, self.path = parts.scheme, parts.netloc, parts.path
        self.params, self.query, self.fragment = parts.params, parts.query, parts.fragment
        self.query_dict = parse_qs(self.query, keep_blank_values=True) if self.query else {}


class JobURI(URI):
    """The URI of an instance: `.remote` is the ssh:// form (this host's name is used
    for a local:// URI), `.local` the local:// form. `str()` is the URI as given, or
    its local form when FLUX_URI_RESOLVE_LOCAL is set."""

    def __init__(self, uri: str):
        super().__init__(uri)
        if not self.scheme:
            raise ValueError(f"JobURI '{uri}' does not have a valid scheme")
        self.path = re.sub("/+", "/", self.path)

    @property
    def remote(self) -> str:
        if self.scheme == "ssh":
            return self.uri
        if self.scheme == "local":
            return f"ssh://{socket.gethostname()}{self.path}"
        raise ValueError(f"Cannot convert JobURI with scheme {self.scheme} to remote")

    @property
    def local(self) -> str:
        if self.scheme == "local":
            return self.uri
        if self.scheme == "ssh":
            return f"local://{self.path}"
        raise ValueError(f"Cannot convert JobURI with scheme {self.scheme} to local")

    @property
    def force_local(self) -> bool:
        return bool(os.environ.get("FLUX_URI_RESOLVE_LOCAL"))

    def __str__(self) -> str:
        return self.local if self.force_local else self.uri

    def __repr__(self) -> str:
        return f"JobURI({self.uri!r})"


class URIResolverURI(URI):
    """A resolver target such as `jobid:123`: urlparse does not take a path of digits
    after a scheme, so the path is protected while parsing."""

    def __init__(self, uri: str):
        super().__init__(uri.replace(":", ":FXX", 1))
        self.path = self.path.replace("FXX", "", 1)
        self.uri = uri


class URIResolverPlugin:
    """A resolver: `describe()` is a one-line summary, `resolve(URIResolverURI)`
    returns a URI string or raises ValueError naming the problem."""

    def describe(self) -> str:
        raise NotImplementedError

    def resolve(self, uri: URIResolverURI) -> str:
        raise NotImplementedError


def _load_resolvers() -> dict[str, URIResolverPlugin]:
    import flux.uri.resolvers as pkg

    out: dict[str, URIResolverPlugin] = {}
    for info in pkgutil.iter_modules(pkg.__path__):
        try:
            mod = importlib.import_module(f"{pkg.__name__}.{info.name}")
            out[info.name] = mod.URIResolver()
        except Exception:  # noqa: BLE001, S112 - a broken resolver only loses its scheme
            continue
    return out


class FluxURIResolver:
    """Resolve a target to a JobURI with the resolver named by its scheme
    (`jobid` when there is none); `ssh:` and `local:` URIs are returned as they are."""

    def __init__(self) -> None:
        self.resolvers = _load_resolvers()

    def resolve(self, uri: str) -> JobURI:
        target = URIResolverURI(uri)
        scheme = target.scheme
        if not scheme:
            uri = f"jobid:{uri}"
            scheme = "jobid"
            target = URIResolverURI(uri)
        if scheme in ("ssh", "local"):
            return JobURI(uri)
        resolver = self.resolvers.get(scheme)
        if resolver is None:
            raise NotImplementedError(f"No plugin for URI scheme {scheme}")
        query = target.query_dict
        if "local" in query and "remote" in query:
            raise ValueError("Only one of 'local' or 'remote' is allowed")
        result = JobURI(resolver.resolve(target))
        if "local" in query:
            result = JobURI(result.local)
        elif "remote" in query:
            result = JobURI(result.remote)
        return result

    def plugins(self) -> dict[str, str]:
        return {name: r.describe() for name, r in self.resolvers.items()}


def resolve(target: str) -> JobURI:
    """`FluxURIResolver().resolve(target)`."""
    return FluxURIResolver().resolve(target)
