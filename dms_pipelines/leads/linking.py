"""Tie each lead to the dealer's car it is about (advert id, stock id, VIN, registration) and offer similar available cars."""

import heapq
import re
from dataclasses import dataclass

import pandas as pd

LINK_ORDER = ("advert_id", "stock_id", "vin", "registration")  # the most specific reference a lead carries wins
UNAVAILABLE = ("sold", "reserved")
NOT_SPACES = re.compile(r"[^A-Z0-9]")


@dataclass(frozen=True)
class VehicleLink:
    stock_id: str | None
    linked_by: str | None  # one of LINK_ORDER, or None when the lead names no car of the dealer's
    vehicle_status: str  # the car's status, or "unlinked"


def _key(value) -> str | None:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NA:
        return None
    text = NOT_SPACES.sub("", str(value).upper())
    return text or None


class StockIndex:
    """The dealer's stock looked up by each kind of reference, normalised (upper case, letters and digits only)."""

    def __init__(self, stock: pd.DataFrame, advert_ids: dict[str, str] | None = None):
        self.stock = stock.reset_index(drop=True)
        self.rows: dict[str, dict[str, int]] = {kind: {} for kind in LINK_ORDER}
        for position, row in enumerate(self.stock.itertuples(index=False)):
            for kind, column in (("stock_id", "stock_id"), ("vin", "vin"), ("registration", "registration")):
                key = _key(getattr(row, column, None))
                if key:
                    self.rows[kind].setdefault(key, position)
        by_stock_id = self.rows["stock_id"]
        for advert_id, stock_id in (advert_ids or {}).items():
            key, position = _key(advert_id), by_stock_id.get(_key(stock_id) or "")
            if key and position is not None:
                self.rows["advert_id"][key] = position

    def find(self, lead: dict) -> tuple[int | None, str | None]:
        """The stock row a lead is about and how it was found; the free-text reference is tried as each kind last."""
        given = {
            "advert_id": lead.get("vehicle_advert_id"),
            "stock_id": lead.get("vehicle_stock_id"),
            "vin": lead.get("vehicle_vin"),
            "registration": lead.get("vehicle_registration"),
        }
        for kind in LINK_ORDER:
            key = _key(given[kind])
            if key and key in self.rows[kind]:
                return self.rows[kind][key], kind
        reference = _key(lead.get("vehicle_ref"))
        if reference:
            for kind in ("stock_id", "registration", "vin", "advert_id"):
                if reference in self.rows[kind]:
                    return self.rows[kind][reference], kind
        return None, None

    def link(self, lead: dict) -> VehicleLink:
        position, kind = self.find(lead)
        if position is None:
            return VehicleLink(None, None, "unlinked")
        row = self.stock.iloc[position]
        return VehicleLink(str(row["stock_id"]), kind, str(row.get("status") or "available"))

    def vehicle(self, stock_id: str) -> dict | None:
        position = self.rows["stock_id"].get(_key(stock_id) or "")
        return None if position is None else self.stock.iloc[position].to_dict()


class Alternatives:
    """The group's available cars indexed once by make and model and by body type, to offer up to `limit` like a given
    car: the same make and model first, else the same body type, nearest in price; never the car itself."""

    def __init__(self, group_stock: pd.DataFrame):
        available = group_stock[group_stock["status"] == "available"] if not group_stock.empty else group_stock
        self.by_model: dict[tuple[str, str], list[dict]] = {}
        self.by_body: dict[str, list[dict]] = {}
        for car in available.to_dict("records"):
            make, model, body = (_folded(car.get(name)) for name in ("make", "model", "body_type"))
            self.by_model.setdefault((make, model), []).append(car)
            if body:
                self.by_body.setdefault(body, []).append(car)

    def like(self, vehicle: dict, limit: int = 3) -> list[dict]:
        if limit <= 0:
            return []
        itself = (vehicle.get("dealer_id"), vehicle.get("stock_id"))
        price = pd.to_numeric(vehicle.get("price"), errors="coerce")
        price = 0.0 if pd.isna(price) else float(price)

        def distance(car: dict) -> tuple:
            value = pd.to_numeric(car.get("price"), errors="coerce")
            return (float("inf") if pd.isna(value) else abs(float(value) - price), str(car.get("dealer_id")), str(car.get("stock_id")))

        chosen: list[dict] = []
        seen = {itself}
        body = _folded(vehicle.get("body_type"))
        for pool in (self.by_model.get((_folded(vehicle.get("make")), _folded(vehicle.get("model"))), []), self.by_body.get(body, []) if body else []):
            for car in heapq.nsmallest(limit + len(seen), pool, key=distance):
                key = (car.get("dealer_id"), car.get("stock_id"))
                if key not in seen and len(chosen) < limit:
                    chosen.append(car)
                    seen.add(key)
        return chosen


def _folded(value) -> str:
    return "" if value is None or value is pd.NA or (isinstance(value, float) and pd.isna(value)) else str(value).casefold()


def alternatives(vehicle: dict, group_stock: pd.DataFrame, limit: int = 3) -> list[dict]:
    """Up to `limit` available cars of the group like `vehicle` (see Alternatives)."""
    return Alternatives(group_stock).like(vehicle, limit)
