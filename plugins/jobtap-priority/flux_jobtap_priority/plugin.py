"""The `priority-default` jobtap plugin (group `flux.jobtap`).

A job's priority is its urgency (RFC 30; SPEC 7.1), except for the two special
urgencies: 31 (expedite) gives the highest priority, 4294967295, and 0 (hold) gives
priority 0, which the job manager never schedules until the urgency is raised.

The job manager asks for a priority each time a job enters PRIORITY (after its
dependencies, and again after every urgency change), so a release or an expedite
takes effect at once. A site replaces this policy (fair share, accounting) with its
own plugin answering `jobtap_priority`; the first answer wins (pluggy firstresult),
and this one is `trylast` so that any other plugin is asked first.
"""

from __future__ import annotations

from typing import Any

from flux.core.hookspecs import hookimpl

URGENCY_HOLD = 0
URGENCY_EXPEDITE = 31
PRIORITY_MIN = 0
PRIORITY_MAX = 4294967295


def priority_of(urgency: int) -> int:
    """The priority for an urgency 0..31."""
    if urgency == URGENCY_EXPEDITE:
        return PRIORITY_MAX
    if urgency == URGENCY_HOLD:
        return PRIORITY_MIN
    return urgency


@hookimpl(trylast=True)
def jobtap_priority(job: Any) -> int:
    return priority_of(job.urgency)
