"""Change data capture pipelines that must cross a switchover without losing or repeating events."""
