"""RDS blue/green: the new primary's binlog coordinates from its post-switchover event."""
from __future__ import annotations

from datetime import UTC, datetime

from bgqueue.adapters.cdc.rds_events import find_green_binlog_coordinates, parse_green_binlog_coordinates

MESSAGE = "Binary log coordinates in green environment after switchover: file mysql-bin-changelog.000003 and position 804"


def test_parses_file_and_position():
    assert parse_green_binlog_coordinates(MESSAGE) == ("mysql-bin-changelog.000003", 804)
    assert parse_green_binlog_coordinates(MESSAGE + ".") == ("mysql-bin-changelog.000003", 804)
    assert parse_green_binlog_coordinates("binary log coordinates in green environment after switchover: "
                                          "file binlog.000120 and position 4") == ("binlog.000120", 4)


def test_other_messages_are_not_coordinates():
    for message in ("Switchover completed on blue/green deployment source.", "", None,
                    "Binary log coordinates in green environment after switchover: file x and position y"):
        assert parse_green_binlog_coordinates(message) is None


def test_the_newest_matching_event_wins():
    events = [
        {"Date": datetime(2024, 1, 1, tzinfo=UTC), "Message": MESSAGE.replace("000003", "000001")},
        {"Date": datetime(2024, 1, 3, tzinfo=UTC), "Message": "Switchover completed"},
        {"Date": datetime(2024, 1, 2, tzinfo=UTC), "Message": MESSAGE},
    ]
    assert find_green_binlog_coordinates(events) == ("mysql-bin-changelog.000003", 804)
    assert find_green_binlog_coordinates([{"Message": "nothing"}]) is None
