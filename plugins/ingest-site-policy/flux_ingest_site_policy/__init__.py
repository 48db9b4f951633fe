"""ingest-site-policy: reject jobs by the site's configured rules, with each rule's message."""
