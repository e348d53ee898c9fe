"""Health of the running system as the hub sees it, and the issues reported to it."""
