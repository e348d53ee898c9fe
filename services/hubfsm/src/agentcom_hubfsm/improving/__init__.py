"""Improvement scanning: the work of the `improving` state (`run`), its filters (`verbs`,
`choose`), its records (`store`) and `GET /api/hub/findings` (`ops`, `api`)."""
