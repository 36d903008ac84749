from tidegate.core.statuses import TERMINAL, TRANSITIONS, Status, can_transition


def test_terminal_states_only_leave_for_replay() -> None:
    assert {s for s in Status if s.terminal} == TERMINAL
    assert TRANSITIONS[Status.SUCCEEDED] == frozenset()
    assert TRANSITIONS[Status.CANCELLED] == frozenset()
    assert can_transition(Status.FAILED, Status.QUEUED)  # dead-letter replay


def test_running_never_goes_back_to_nothing() -> None:
    assert not can_transition(Status.QUEUED, Status.SUCCEEDED)
    assert can_transition(Status.RUNNING, Status.RETRYING)
    assert can_transition(Status.RETRYING, Status.RUNNING)
