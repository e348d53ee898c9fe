"""Goals: intake, lifecycle, planning, progress and verification (one module per job)."""
