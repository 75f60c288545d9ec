"""Pre-switchover checks: each returns a structured CheckResult; none raises to its caller."""
