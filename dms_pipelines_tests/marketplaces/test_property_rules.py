"""Properties of the rules and the feeds: rows are conserved for any mix of good and bad rows; private values never leave."""

from datetime import date

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dms_pipelines.config import Validation
from dms_pipelines.marketplaces import autotrader, google, meta, website
from dms_pipelines.marketplaces.base import render_for
from dms_pipelines.marketplaces.registry import SPECS
from dms_pipelines.stock.schema import coerce_to_schema
from dms_pipelines.stock.validate import validate_stock
from dms_pipelines_tests.support import feed_vehicle, file_bytes, fixed_dealer

BAD = {
    "price": [None, 0.0, 99999.0, -5.0],
    "registration": ["XX", "AB72CDE", None],
    "year": [1850, 2031],
    "vin": ["SHORT", "WF0XXXGCDXKA1234O"],
    "status": ["on_order"],
    "make": [None],
    "mileage": [-1],
}


@st.composite
def stock_rows(draw):
    count = draw(st.integers(min_value=1, max_value=25))
    rows = []
    for n in range(count):
        changes = {}
        for field, values in BAD.items():
            if draw(st.booleans()) and draw(st.integers(0, 4)) == 0:
                changes[field] = draw(st.sampled_from(values))
        stock_id = draw(st.sampled_from([f"S{n:04d}", "S0000"]))  # sometimes a duplicate stock number
        changes.setdefault("vin", f"WF0XXXGCDXKA{n:05d}")
        rows.append(feed_vehicle(stock_id, **changes))
    frame = coerce_to_schema(pd.DataFrame(rows))
    frame["source_row"] = range(1, len(frame) + 1)
    return frame


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stock_rows())
def test_every_row_is_accepted_or_quarantined(frame):
    result = validate_stock(frame, "stock_full_x.csv", Validation(), date(2026, 11, 21))
    errors = set(result.issues.loc[result.issues["severity"] == "error", "source_row"].astype(int))
    assert len(result.accepted) + result.quarantined_rows == len(frame)
    assert set(result.accepted["source_row"].astype(int)).isdisjoint(errors)
    assert len(errors) == result.quarantined_rows


secret = st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ0123456789#", min_size=12, max_size=20).map(lambda s: "PRIV" + s)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(secret, secret, secret, st.integers(min_value=1000, max_value=99999).map(lambda pounds: pounds + 0.37)), min_size=1, max_size=5))
def test_private_values_never_reach_any_marketplace(private):
    rows = [
        feed_vehicle(f"A{n:04d}", private_key_code=key, private_memo=memo, private_previous_keeper=keeper, private_cost_price=cost, private_prep_cost=cost / 7)
        for n, (key, memo, keeper, cost) in enumerate(private)
    ]
    stock = coerce_to_schema(pd.DataFrame(rows))
    dealer = fixed_dealer()
    rendered = {name: render_for(SPECS[name], stock, dealer, dealer.marketplaces[name]) for name in SPECS if name in dealer.marketplaces}
    assert set(rendered) == set(SPECS)  # the fixed dealer publishes to every marketplace of the registry
    outputs = [
        google.serialise(rendered["google"].items),
        website.serialise(rendered["website"].items, dealer),
        meta.serialise(rendered["meta"].items, "csv"),
        meta.serialise(rendered["meta"].items, "xml"),
        file_bytes("carsnip", "_vehicles.csv", rendered["carsnip"].items, dealer),
        file_bytes("carsnip", "_dealer.csv", rendered["carsnip"].items, dealer),
        autotrader.serialise(rendered["autotrader"].items),
    ]
    everything = b"".join(outputs).decode("utf-8")
    for key, memo, keeper, cost in private:
        for value in (key, memo, keeper, f"{cost:.2f}", f"{cost / 7:.2f}"):
            assert value not in everything
