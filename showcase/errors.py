"""The one base class of the errors a user can cause or must be told about.

Every error whose message is written for a person (a wrong preset or workload, a server that is
not ready, a model that cannot be fetched, a refused pre-flight, a failed chat reply) derives from
`UserError`. The edges translate it in one place each: the app into a message in the UI
(`app.py`), the command line into `error: ...` and exit status 2 (`engine.py`). Anything else is a
bug and surfaces as one.
"""


class UserError(Exception):
    """Something a person can act on; the message says what and, where it helps, how."""
