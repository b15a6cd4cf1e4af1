"""The soak's accounting rule (bench/soak_ledger.py): what a session is owed, and what is lost."""

from __future__ import annotations

from bench.soak_ledger import Ledger, Publish, Session


def ledger(*sessions: Session, grace: float = 5.0) -> Ledger:
    book = Ledger(grace)
    book.sessions.extend(sessions)
    return book


def test_a_session_open_throughout_is_owed_every_answered_publish() -> None:
    s = Session(1, "c", subscribed=1.0)
    book = ledger(s)
    book.publishes[7] = Publish(7, "c", sent=2.0, acked=2.1)
    assert book.audit() == (1, [(7, 1)])
    s.receive(7, "c")
    assert book.audit() == (1, [])


def test_publishes_sent_before_the_subscribe_was_acked_are_not_owed() -> None:
    book = ledger(Session(1, "c", subscribed=2.0))
    book.publishes[1] = Publish(1, "c", sent=1.9, acked=2.5)
    assert book.audit() == (0, [])


def test_a_closing_session_is_owed_only_what_was_answered_grace_seconds_before() -> None:
    s = Session(1, "c", subscribed=0.0, left=10.0)
    book = ledger(s)
    book.publishes[1] = Publish(1, "c", sent=4.0, acked=5.0)  # 5 + 5 <= 10: owed
    book.publishes[2] = Publish(2, "c", sent=4.5, acked=5.01)  # answered too close to the close
    assert book.audit() == (1, [(1, 1)])


def test_unanswered_publishes_and_other_channels_are_owed_to_no_one() -> None:
    book = ledger(Session(1, "c", subscribed=0.0))
    book.publishes[1] = Publish(1, "c", sent=1.0)  # refused: acked stays None
    book.publishes[2] = Publish(2, "d", sent=1.0, acked=1.1)
    assert book.audit() == (0, [])


def test_duplicates_and_foreign_broadcasts_are_counted_not_received() -> None:
    s = Session(1, "c", subscribed=0.0)
    s.receive(1, "c")
    s.receive(1, "c")
    s.receive(2, "d")
    assert (s.received, s.duplicates, s.foreign) == ({1}, 1, 1)


def test_every_session_is_audited_on_its_own() -> None:
    a, b = Session(1, "c", subscribed=0.0), Session(2, "c", subscribed=0.0)
    book = ledger(a, b)
    book.publishes[1] = Publish(1, "c", sent=1.0, acked=1.1)
    a.receive(1, "c")
    assert book.audit() == (2, [(1, 2)])
