"""Change data capture pipelines that must cross a switchover without losing or repeating events.

What the rest of bgqueue calls:
- ``migration.migrate_pipelines`` (the CDC phase, re-entrant) and ``migration.pipeline_health``;
- ``runner.run_consumers`` (``bgqueue cdc run``: the built-in binlog consumers);
- ``audit.audit_stream`` (a stream against the writers' ledger: lost and duplicate counts);
- ``rds_events.parse_green_binlog_coordinates`` (RDS blue/green).
"""
