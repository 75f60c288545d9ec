import pytest

from bgqueue.model.errors import IllegalTransition
from bgqueue.model.phases import TERMINAL, TRANSITIONS, Phase, check_transition


def test_happy_path_is_allowed_in_order():
    path = [Phase.PENDING, Phase.PREPARING, Phase.SYNCING, Phase.VALIDATING, Phase.READY, Phase.SWITCHING,
            Phase.CDC_MIGRATING, Phase.MONITORING, Phase.COMPLETED]
    for a, b in zip(path, path[1:], strict=False):
        check_transition(a, b)


@pytest.mark.parametrize("a,b", [(Phase.PENDING, Phase.SWITCHING), (Phase.READY, Phase.COMPLETED),
                                 (Phase.NO_GO, Phase.PREPARING), (Phase.SWITCHING, Phase.NO_GO),
                                 (Phase.COMPLETED, Phase.SWITCHING)])
def test_illegal_transitions_raise_and_say_what_is_allowed(a, b):
    with pytest.raises(IllegalTransition, match=f"{a} → {b} is not allowed"):
        check_transition(a, b)


def test_no_go_only_before_any_server_change():
    # NO_GO means "nothing changed": it must not be reachable once the switchover has begun.
    for phase, targets in TRANSITIONS.items():
        if Phase.NO_GO in targets:
            assert phase in {Phase.PENDING, Phase.PREPARING, Phase.SYNCING, Phase.VALIDATING, Phase.PILOTING,
                              Phase.READY}


def test_every_phase_is_in_the_table_and_terminals_lead_nowhere_but_rollback():
    assert set(TRANSITIONS) == set(Phase)
    for t in TERMINAL:
        assert TRANSITIONS[t] <= {Phase.ROLLING_BACK}
