"""URI resolvers, one module per scheme (see flux.uri)."""
