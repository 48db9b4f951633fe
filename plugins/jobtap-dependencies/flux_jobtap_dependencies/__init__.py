"""jobtap-dependencies: RFC 26 job dependencies (after*, singleton, begin-time)."""
