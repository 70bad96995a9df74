"""The registry is the one list of marketplaces: the configuration is checked against it, each mistake named with its key."""

import copy

from dms_pipelines.config import parse_settings
from dms_pipelines.marketplaces.registry import SPECS, published_specs
from dms_pipelines_tests.support import problems_of


def test_the_committed_configuration_publishes_to_every_marketplace_it_declares_in_registry_order(raw):
    specs = published_specs(parse_settings(raw, "test.yaml"))
    assert [spec.name for spec in specs] == [name for name in SPECS if name in raw["marketplaces"]]
    assert len({spec.dealer_asset for spec in specs}) == len(specs)  # one asset per marketplace


def test_an_unknown_marketplace_is_named_with_a_suggestion(raw):
    raw["marketplaces"]["carsnp"] = copy.deepcopy(raw["marketplaces"]["carsnip"])
    assert "marketplaces.carsnp: unknown marketplace (did you mean carsnip?)" in problems_of(raw)


def test_an_account_key_the_marketplace_does_not_declare_is_named_with_a_suggestion(raw):
    account = raw["dealers"][0]["marketplaces"]["google"]
    account["store_cod"] = account.pop("store_code")
    assert "dealers[0].marketplaces.google.store_cod: unknown key (did you mean store_code?)" in problems_of(raw)


def test_a_file_format_or_destination_the_marketplace_does_not_take_is_refused(raw):
    raw["marketplaces"]["website"]["file_format"] = "xml"
    assert "marketplaces.website.file_format: xml is not one website takes (json)" in problems_of(raw)
    del raw["marketplaces"]["website"]["file_format"]
    raw["marketplaces"]["autotrader"]["destination"] = {"kind": "local", "path": "outbox/autotrader"}
    assert "marketplaces.autotrader.destination: autotrader takes API calls (kind: http_api), not kind: local" in problems_of(raw)
