"""Instance URIs and the resolvers behind `flux uri` and `flux proxy` (SPEC 6.6).

`JobURI` converts between the `ssh://HOST/PATH` form a child instance records in its
parent and the `local:///PATH` form usable on the same host. `FluxURIResolver`
turns a target (`JOBID`, `jobid:ƒA/ƒB`, `pid:PID`, `/`, `..`, or a URI) into a
`JobURI`, with the `?local`/`?remote` queries. Resolvers are the modules of the
`flux.uri.resolvers` package (`jobid`, `pid`), each with a `URIResolver` class.
"""

from flux.uri.uri import (
    FluxURIResolver,
    JobURI,
    URIResolverPlugin,
    URIResolverURI,
    resolve,
)

__all__ = ["FluxURIResolver", "JobURI", "URIResolverPlugin", "URIResolverURI", "resolve"]
