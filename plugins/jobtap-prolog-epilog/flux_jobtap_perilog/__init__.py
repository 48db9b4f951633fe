"""jobtap-prolog-epilog: run site scripts before a job starts and after it ends."""
