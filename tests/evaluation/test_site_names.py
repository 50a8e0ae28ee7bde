"""How the site check names an ensemble's networks in its per-network AUCs (Evaluate page, CLI)."""

from __future__ import annotations

from types import SimpleNamespace


def test_an_ensembles_check_model_is_named_as_such_not_as_one_more_voter():
    from core.evaluation.site_check import network_names

    card = SimpleNamespace(members=({"run_id": "a"}, {"run_id": "b"}, {"run_id": "c"}), sentinels=({"run_id": "s"},))
    assert network_names(SimpleNamespace(card=card)) == {
        "a": "model 1 of the ensemble", "b": "model 2 of the ensemble", "c": "model 3 of the ensemble",
        "s": "the ensemble's check model"}
    single = SimpleNamespace(card=SimpleNamespace(members=(), sentinels=()))
    assert network_names(single) == {}
