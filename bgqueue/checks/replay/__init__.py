"""Query replay: capture production's read queries, replay them on blue and green pinned at one
GTID position, compare the answers (``run.replay_cluster``; the check is ``check.query_replay``)."""
