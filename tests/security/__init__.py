"""Security tests: one module per concern of issue 11 (attacks an operator or an intruder could try)."""
