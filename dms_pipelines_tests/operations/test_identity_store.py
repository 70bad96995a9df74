"""The identity store: assignments replace a record's cluster, the review queue holds a pair once, decisions are kept, consent's newest statement wins."""

from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dms_pipelines.operations import identity_store
from dms_pipelines.operations.db import engine_for, match_decisions

AT = datetime(2026, 11, 1, tzinfo=timezone.utc)


@pytest.fixture
def engine(tmp_path):
    return engine_for(f"sqlite:///{tmp_path / 'ops.sqlite'}")


def assignment(kind, key, cluster, tier="model", outcome="joined", probability=0.999, candidate=None, candidate_cluster=None, reason="model p=0.999"):
    return {
        "record_kind": kind,
        "record_key": key,
        "cluster_id": cluster,
        "tier": tier,
        "outcome": outcome,
        "match_probability": probability,
        "match_weight": 9.5,
        "candidate_key": candidate,
        "candidate_cluster_id": candidate_cluster,
        "reason": reason,
        "evidence": '[{"comparison": "email", "level": "exact", "weight": 6.1}]',
    }


def test_a_record_linked_again_keeps_one_row_and_every_decision(engine):
    identity_store.save_assignments(engine, "leeds", pd.DataFrame([assignment("lead", "1", "P-a")]), {("lead", "1"): "h1"}, "run-1", "v1")
    identity_store.save_assignments(engine, "leeds", pd.DataFrame([assignment("lead", "1", "P-b", tier="email")]), {("lead", "1"): "h2"}, "run-2", "v1")
    linked = identity_store.linked_records(engine, "leeds")
    assert linked[["record_key", "cluster_id", "tier", "content_hash"]].values.tolist() == [["1", "P-b", "email", "h2"]]
    with engine.connect() as connection:
        assert [row.cluster_id for row in connection.execute(match_decisions.select().order_by(match_decisions.c.id))] == ["P-a", "P-b"]
    assert identity_store.linked_records(engine, "york").empty


def test_a_pair_is_queued_once_and_a_decision_is_kept_and_returned_as_a_label(engine):
    review = pd.DataFrame([assignment("lead", "7", "P-new", tier="review", outcome="review", probability=0.8, candidate="C-1", candidate_cluster="P-old")])
    assert identity_store.save_assignments(engine, "leeds", review, {}, "run-1", "v1")["queued"] == 1
    assert identity_store.save_assignments(engine, "leeds", review, {}, "run-2", "v1")["queued"] == 0
    [entry] = identity_store.reviews(engine, "leeds")
    assert (entry.record_key, entry.candidate_cluster_id, entry.evidence[0]["comparison"]) == ("7", "P-old", "email")
    decided = identity_store.decide_review(engine, entry.id, accepted=False, decided_by="ops@example.com", note="different people")
    assert decided.status == "rejected" and decided.decided_by == "ops@example.com"
    assert identity_store.reviews(engine, "leeds") == []
    assert identity_store.decisions_for_matching(engine, "leeds").values.tolist() == [["lead", "7", "P-old", False]]
    assert identity_store.save_assignments(engine, "leeds", review, {}, "run-3", "v1")["queued"] == 0  # a rejected pair never re-enters the queue
    with pytest.raises(identity_store.ReviewError, match="already rejected"):
        identity_store.decide_review(engine, entry.id, accepted=True)
    with pytest.raises(identity_store.ReviewError, match="no review entry 999"):
        identity_store.decide_review(engine, 999, accepted=True)


def test_assignments_are_stored_in_chunks_without_losing_a_row(engine, monkeypatch):
    monkeypatch.setattr(identity_store, "CHUNK", 7)
    rows = pd.DataFrame([assignment("customer", f"C{n}", f"P-{n % 5}") for n in range(50)])
    assert identity_store.save_assignments(engine, "leeds", rows, {}, None, None)["records"] == 50
    assert sorted(identity_store.linked_records(engine, "leeds")["record_key"]) == sorted(f"C{n}" for n in range(50))


STATEMENTS = st.lists(st.tuples(st.sampled_from(["customer", "lead"]), st.sampled_from(["email", "sms"]), st.booleans(), st.integers(0, 5)), min_size=1, max_size=12)


@settings(max_examples=40, deadline=None)
@given(statements=STATEMENTS)
def test_the_newest_statement_of_any_record_of_a_customer_wins_and_a_refusal_wins_a_tie(tmp_path_factory, statements):
    engine = engine_for(f"sqlite:///{tmp_path_factory.mktemp('consent') / 'ops.sqlite'}")
    both = pd.DataFrame([assignment("customer", "C1", "P-x"), assignment("lead", "L1", "P-x")])
    identity_store.save_assignments(engine, "leeds", both, {}, None, None)
    events = [
        {"record_kind": kind, "record_key": "C1" if kind == "customer" else "L1", "channel": channel, "granted": granted, "source": "f", "wording": None, "stated_at": AT + timedelta(days=day)}
        for kind, channel, granted, day in statements
    ]
    identity_store.record_consents(engine, "leeds", events)
    identity_store.record_consents(engine, "leeds", events)  # stored once
    now = identity_store.current_consent(engine, "leeds")
    for channel in {e["channel"] for e in events}:
        newest = max(e["stated_at"] for e in events if e["channel"] == channel)
        expected = all(e["granted"] for e in events if e["channel"] == channel and e["stated_at"] == newest)
        assert now[now["channel"] == channel]["granted"].tolist() == [int(expected)]
