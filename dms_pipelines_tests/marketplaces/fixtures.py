"""A small fixed stock and dealer for the marketplace tests, with the awkward cases every feed must survive."""

import pandas as pd

from dms_pipelines.config import Address, Dealer, DealerMarketplace, LocalInboxSource
from dms_pipelines.stock.schema import coerce_to_schema

PRIVATE_MARKERS = ("SECRET-KEY-123", "Mrs Private Keeper", "MEMO-PX-9931", "7777.77", "123.45")
IMAGES = "|".join(f"https://img.example/{n}.jpg" for n in range(1, 9))


def vehicle(stock_id: str, **changes) -> dict:
    base = {
        "dealer_id": "leeds",
        "stock_id": stock_id,
        "vin": "WF0XXXGCDXKA" + stock_id[-5:].rjust(5, "0"),
        "registration": "YD71KPR",
        "vehicle_type": "car",
        "make": "Ford",
        "model": "Fiesta",
        "derivative": "1.0 EcoBoost 125 Titanium 5dr",
        "trim": "Titanium",
        "body_type": "hatchback",
        "fuel_type": "petrol",
        "transmission": "manual",
        "colour": "Blue",
        "doors": 5,
        "seats": 5,
        "engine_size_cc": 999,
        "co2_gkm": 112,
        "condition": "used",
        "status": "available",
        "year": 2021,
        "first_registration_date": pd.Timestamp("2021-10-05"),
        "mileage": 21000,
        "price": 12995.0,
        "vat_status": "marginal",
        "description": "Lovely Fiesta. Full service history.",
        "features": "Bluetooth|Cruise control",
        "image_urls": IMAGES,
        "date_in_stock": pd.Timestamp("2026-10-01"),
        "private_cost_price": 7777.77,
        "private_prep_cost": 123.45,
        "private_key_code": "SECRET-KEY-123",
        "private_memo": "MEMO-PX-9931 from Mrs Private Keeper",
        "private_previous_keeper": "Mrs Private Keeper",
        "source_file": "x.csv",
        "source_row": 1,
    }
    base.update(changes)
    return base


def fixed_stock() -> pd.DataFrame:
    return coerce_to_schema(
        pd.DataFrame(
            [
                vehicle("A0001"),
                vehicle("A0002", status="reserved", make="Kia", model="Sportage", body_type="suv", fuel_type="hybrid", transmission="automatic", price=23495.0),
                vehicle("A0003", status="sold"),
                vehicle("A0004", description='=HYPERLINK("http://evil.example","click")', trim="+44 trim"),
                vehicle("A0005", description="<p>Great&nbsp;car<br>\x07with <b>FSH</b></p>\x00"),
                vehicle("A0006", description=("Long words here " * 400).strip()),
                vehicle("A0007", vin="SHORTVIN"),
                vehicle(
                    "A0008",
                    make="Tesla",
                    model="Model 3",
                    fuel_type="electric",
                    engine_size_cc=0,
                    co2_gkm=0,
                    transmission="automatic",
                    body_type="saloon",
                    image_urls="https://img.example/t1.jpg|https://img.example/t2.jpg",
                ),
            ]
        )
    )


def fixed_dealer() -> Dealer:
    return Dealer(
        id="leeds",
        name="Aire Valley Motors Leeds",
        address=Address(street="120 Kirkstall Road", city="Leeds", region="West Yorkshire", postcode="LS3 1JL"),
        phone="0113 496 0120",
        website="https://www.airevalleymotors.example/leeds",
        source=LocalInboxSource(kind="local_inbox"),
        profile="navigator_csv",
        marketplaces={
            "google": DealerMarketplace(store_code="AVM-LEEDS", list_reserved=False),
            "website": DealerMarketplace(),
            "meta": DealerMarketplace(catalog_id="CAT-1"),
            "carsnip": DealerMarketplace(feed_id="CS-LEEDS", list_reserved=True),
            "autotrader": DealerMarketplace(advertiser_id="ADV-1"),
        },
    )


def feed_file(marketplace: str, suffix: str, dealer: Dealer | None = None, file_format: str = "csv"):
    """The dealer's file of a snapshot marketplace whose name ends with `suffix` (its FeedFile, as the spec declares it)."""
    from dms_pipelines.marketplaces.registry import SPECS

    dealer = dealer or fixed_dealer()
    spec = SPECS[marketplace]
    (file,) = [f for f in spec.files(dealer, dealer.marketplaces[marketplace], file_format) if f.name.endswith(suffix)]
    return file


def file_bytes(marketplace: str, suffix: str, items: pd.DataFrame, dealer: Dealer | None = None, file_format: str = "csv") -> bytes:
    """That file's bytes for the rendered `items`, built as a run builds it."""
    from dms_pipelines.marketplaces.row_files import whole

    dealer = dealer or fixed_dealer()
    file = feed_file(marketplace, suffix, dealer, file_format)
    pieces = whole(file.rows, items) if file.rows is not None else file.build(items, dealer, dealer.marketplaces[marketplace])
    return b"".join(bytes(piece) for piece in pieces)
