"""jobtap-accounting: fair-share priorities and limits from an accounting database."""
