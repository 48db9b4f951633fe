"""jobtap-priority: the default priority plugin (priority = urgency; hold and expedite)."""
