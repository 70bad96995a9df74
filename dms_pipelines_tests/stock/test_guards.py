"""The distribution guard: a full export whose prices jump against the dealer's last accepted stock is held, a nightly never."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dms_pipelines.config import Validation
from dms_pipelines.stock.guards import distribution_guard
from dms_pipelines.stock.schema import coerce_to_schema

RULES = Validation()


def realistic_stock(n: int, seed: int, max_age: float, new_share: float, first_number: int = 1) -> pd.DataFrame:
    """A dealer's stock as cars really are: a newer car costs more, an older one has done more miles."""
    rng = np.random.default_rng(seed)
    new = rng.random(n) < new_share
    age = np.where(new, 0.0, rng.uniform(0.3, max(0.4, max_age), n))
    new_price = np.exp(rng.normal(np.log(26_000), 0.45, n))
    price = np.maximum(995, np.round(new_price * 0.86**age * rng.uniform(0.92, 1.08, n) / 5) * 5 - 5)
    mileage = np.where(new, rng.integers(5, 50, n), (age * rng.uniform(5_000, 14_000, n)).astype(int))
    frame = pd.DataFrame(
        {
            "dealer_id": "leeds",
            "stock_id": [f"LEE{first_number + i:05d}" for i in range(n)],
            "status": "available",
            "price": price,
            "mileage": mileage,
            "year": (2026 - np.floor(age)).astype(int),
        }
    )
    return coerce_to_schema(frame)


def swapped(stock: pd.DataFrame) -> pd.DataFrame:
    """The same vehicles with the price and mileage column headers exchanged in the export."""
    return coerce_to_schema(stock.assign(price=stock["mileage"].astype("Float64"), mileage=stock["price"].round().astype("Int64")))


stocks = st.builds(
    realistic_stock,
    n=st.integers(20, 400),
    seed=st.integers(0, 2**32 - 1),
    max_age=st.floats(0.5, 15),
    new_share=st.floats(0, 0.3),
)


@given(stock=stocks, seed=st.integers(0, 2**32 - 1), repriced=st.floats(0, 0.1), sold=st.floats(0, 0.1), corrected=st.floats(0, 0.05), arrivals=st.integers(0, 40))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_normal_nightly_is_never_held(stock, seed, repriced, sold, corrected, arrivals):
    """Up to 10% repriced (by up to 30% either way), up to 10% sold and gone, a few odometers corrected, new arrivals."""
    rng = np.random.default_rng(seed)
    n = len(stock)
    export = stock.copy()
    changed = rng.random(n) < repriced
    export.loc[changed, "price"] = (export.loc[changed, "price"] * rng.uniform(0.7, 1.3, int(changed.sum()))).round()
    export["mileage"] = export["mileage"] + pd.array(rng.integers(0, 400, n), dtype="Int64")  # cars are driven
    down = rng.random(n) < corrected
    export.loc[down, "mileage"] = (export.loc[down, "mileage"] // 2).astype("Int64")
    export = export[rng.random(n) >= sold]
    export = pd.concat([export, realistic_stock(arrivals, seed + 1, 10, 0.1, first_number=90_000)], ignore_index=True)
    assert distribution_guard(coerce_to_schema(export), stock, RULES) is None


@given(stock=stocks)
@settings(max_examples=150, deadline=None)
def test_a_price_and_mileage_swap_is_always_held(stock):
    reason = distribution_guard(swapped(stock), stock, RULES)
    assert reason is not None and f"comparing the {len(stock)} vehicles in both: " in reason


@given(stock=stocks, matched=st.integers(0, RULES.guard_min_vehicles - 1), arrivals=st.integers(0, 500))
@settings(max_examples=100, deadline=None)
def test_too_few_vehicles_in_both_are_never_judged(stock, matched, arrivals):
    """A first export, a tiny dealer or a renumbered stock: not enough vehicles in both exports to compare."""
    export = pd.concat([swapped(stock.head(matched)), swapped(realistic_stock(arrivals, 3, 10, 0.1, first_number=90_000))], ignore_index=True)
    assert distribution_guard(export, stock, RULES) is None


def test_a_first_export_is_never_held():
    stock = realistic_stock(300, 1, 10, 0.1)
    assert distribution_guard(swapped(stock), stock.iloc[:0], RULES) is None


def test_the_reason_names_each_statistic_with_its_values_and_limits():
    stock = realistic_stock(412, 5, 12, 0.05)
    reason = distribution_guard(swapped(stock), stock, RULES)
    old, new = stock["price"].median(), stock["mileage"].median()
    assert f"median price £{new:,.0f} against £{old:,.0f} in the last accepted stock (x{new / old:.2f}, limit x1.5 either way)" in reason
    assert "of the 412 vehicles in both changed price by more than 25% (limit 50%)" in reason
    assert "the mileage of " in reason and " vehicles in both went down (limit 20%)" in reason
    assert "rank correlation of price with year" in reason and "newer cars now cost less; limit: from at least +0.30 to at most -0.30)" in reason
    assert reason.endswith("release it if the change is real")


def test_each_signal_can_be_turned_off():
    stock = realistic_stock(300, 2, 12, 0.05)
    off = {"guard_median_price_factor": 0, "guard_repriced_share": None, "guard_mileage_down_share": 0, "guard_price_year_correlation": 0}
    assert distribution_guard(swapped(stock), stock, Validation(**off)) is None
    for name in off:
        only = Validation(**{key: value for key, value in off.items() if key != name})
        assert distribution_guard(swapped(stock), stock, only) is not None, name


def test_a_dealer_wide_price_cut_is_not_a_jump():
    """A sale (every car 10% off) changes every price, but by less than the repriced threshold and the median factor."""
    stock = realistic_stock(300, 4, 10, 0.1)
    assert distribution_guard(stock.assign(price=stock["price"] * 0.9), stock, RULES) is None


def test_prices_tripled_are_held_by_the_median_alone():
    stock = realistic_stock(300, 4, 10, 0.1)
    reason = distribution_guard(stock.assign(price=stock["price"] * 3), stock, Validation(guard_repriced_share=0))
    assert reason is not None and "(x3.00, limit x1.5 either way)" in reason


@pytest.mark.parametrize("factor", [0.5, 1.0])
def test_a_median_factor_must_be_above_one(factor):
    with pytest.raises(ValueError):
        Validation(guard_median_price_factor=factor)
