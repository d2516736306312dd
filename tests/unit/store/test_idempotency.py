"""Idempotency keys in the store: the key is committed with the change, a repeat writes nothing."""

from __future__ import annotations

import time
from typing import Any

import pytest

from engine.errors import Conflict, InvalidInput, NotFound
from engine.store import Store
from engine.store.idempotency import IdempotencyKey, Idempotent, Replay
from engine.types import Modality
from tests.unit.store.conftest import face


def _idem(caller: str, rid: str, op: str = "insert", retention_s: float = 3600.0) -> Idempotent:
    return Idempotent(IdempotencyKey(caller, rid, op, retention_s), lambda w: {"ref_id": w.ref_id})


def _records(store: Store) -> int:
    return store.count(status=None)


def test_repeat_writes_nothing_and_returns_the_first_result(store: Store) -> None:
    first = store.insert({Modality.FACE: face(1)}, idem=_idem("tok_a", "r-1"))
    with pytest.raises(Replay) as replay:  # a generated ref id would otherwise make a second record
        store.insert({Modality.FACE: face(1)}, idem=_idem("tok_a", "r-1"))
    assert replay.value.result == {"ref_id": first.ref_id}
    assert _records(store) == 1 and store.last_seq() == first.seq
    assert store.idempotent_result(IdempotencyKey("tok_a", "r-1", "insert")) == {"ref_id": first.ref_id}
    # the same request id from another caller is another request
    other = store.insert({Modality.FACE: face(2)}, idem=_idem("tok_b", "r-1"))
    assert other.ref_id != first.ref_id and _records(store) == 2


def test_a_failed_write_keeps_no_key(store: Store) -> None:
    store.insert({Modality.FACE: face(1)}, ref_id="R-1")
    with pytest.raises(Exception, match="already exists"):
        store.insert({Modality.FACE: face(2)}, ref_id="R-1", idem=_idem("tok_a", "r-2"))
    assert store.idempotent_result(IdempotencyKey("tok_a", "r-2", "insert")) is None


def test_same_id_for_another_operation_is_a_conflict(store: Store) -> None:
    w = store.insert({Modality.FACE: face(1)}, idem=_idem("tok_a", "r-3"))
    with pytest.raises(Conflict) as exc:
        store.delete(w.ref_id, idem=_idem("tok_a", "r-3", "delete"))
    assert exc.value.reason == "REQUEST_ID_REUSED"
    assert store.get(w.ref_id).status.value == "active"


def test_delete_and_decide_repeat(store: Store) -> None:
    w = store.insert({Modality.FACE: face(1)})
    store.delete(w.ref_id, idem=_idem("tok_a", "d-1", "delete"))
    with pytest.raises(Replay):
        store.delete(w.ref_id, idem=_idem("tok_a", "d-1", "delete"))
    with pytest.raises(NotFound):  # without the key it is a second, failing delete
        store.delete(w.ref_id)


def test_expired_keys_are_fresh_and_purged(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    store.insert({Modality.FACE: face(1)}, idem=_idem("tok_a", "old", retention_s=60.0))
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 120.0)
    assert store.idempotent_result(IdempotencyKey("tok_a", "old", "insert", 60.0)) is None
    store.insert({Modality.FACE: face(2)}, idem=_idem("tok_a", "old", retention_s=60.0))
    assert _records(store) == 2
    with store.db.read() as conn:
        assert conn.execute("SELECT COUNT(*) FROM idempotency").fetchone()[0] == 1


def test_results_are_encrypted(store: Store) -> None:
    token_id, secret = store.create_token("station", "station", key=IdempotencyKey("tok_a", "t-1", "ct"))
    again = store.create_token("station", "station", key=IdempotencyKey("tok_a", "t-1", "ct"))
    assert again == (token_id, secret) and len(store.list_tokens()) == 1
    with store.db.read() as conn:
        dump = "\n".join(conn.iterdump())
    assert secret not in dump and secret[4:20] not in dump


def test_revoke_repeat_and_last_admin(store: Store) -> None:
    admin, _ = store.create_token("ops", "admin")
    other, _ = store.create_token("ops 2", "admin")
    key = IdempotencyKey("tok_a", "rv-1", "revoke_token")
    store.revoke_token(other, key=key)
    store.revoke_token(other, key=key)  # a repeat succeeds instead of NotFound
    with pytest.raises(Conflict) as exc:
        store.revoke_token(admin)
    assert exc.value.reason == "LAST_ADMIN_TOKEN"
    assert [t.token_id for t in store.list_tokens() if t.active] == [admin]
    station, _ = store.create_token("st", "station")
    store.revoke_token(station)  # the last station token may go


@pytest.mark.parametrize("kw", [{"caller": ""}, {"request_id": ""}, {"retention_s": 0.0}])
def test_key_needs_its_parts(kw: dict[str, Any]) -> None:
    args: dict[str, Any] = {"caller": "c", "request_id": "r", "operation": "insert"} | kw
    with pytest.raises(InvalidInput):
        IdempotencyKey(**args)
