"""Onboarding an unseen DMS layout for an Irish rooftop by profile alone, guided by `profile check`; then a broken profile, told plainly."""

import json
import random
from pathlib import Path

import pytest
import yaml

from dms_pipelines.cli import main
from dms_pipelines.stock.store import read_stock

COUNTIES = ["D", "G", "C", "KY", "L", "WX", "MH", "KE"]
MAKES = [("TOYOTA", "YARIS", "1.5L", "HEV"), ("SKODA", "OCTAVIA", "2.0L", "D"), ("VOLKSWAGEN", "GOLF", "1.4L", "PHEV"), ("HYUNDAI", "TUCSON", "1.6L", "P")]
COMPANY_CARS = 2
COST_MARK = "7531.19"  # a cost price no advert may ever show

PROFILE = """
# A Dublin DMS: one <dl:Car> per vehicle, attributes for facts, euro prices, kilometres, company cars in the same file.
name: dublin_attr_xml
format: xml
xml:
  record: dl:Car
  namespaces: {dl: "urn:example:dublin-dms:1"}
files:
  full: ["cars_full_*.xml"]
  delta: ["cars_delta_*.xml"]
fields:
  stock_id: {xpath: "@Ref"}
  vin: {xpath: "@Chassis"}
  registration: {xpath: "@Reg", type: registration}
  make: {xpath: "@Make", case: title}
  model: {xpath: "@Model", case: title}
  derivative: {xpath: "@Spec"}
  engine_size_cc: {xpath: "@Engine", extract: "([0-9.]+)", type: integer, convert: litres_to_cc}
  fuel_type: {xpath: "@EngineCode", map: {HEV: hybrid, PHEV: plugin_hybrid, P: petrol, D: diesel}}
  transmission: {xpath: "@Box", map: {M: manual, A: automatic}}
  body_type: {xpath: "@Body", map: {HATCH: hatchback, ESTATE: estate, SUV: suv}, unmapped: default, map_default: other}
  colour: {xpath: "@Colour", case: title}
  mileage: {xpath: "@Km", type: integer}
  year: {xpath: "@ModelYear", type: integer}
  condition: {xpath: "@Condition", map: {NEW: new, USED: used}}
  status: {xpath: "@State", map: {FORSALE: available, RESERVED: reserved, SOLD: sold}}
  price: {xpath: "@PriceEUR", type: money}
  description: {xpath: "dl:Advert"}
  image_urls: {xpath: "dl:Photo/@Src", type: list, separator: "|"}
  private_cost_price: {xpath: "@Cost", type: money}
constants:
  vehicle_type: car
skip:
  - {xpath: "@Use", in: [COMPANY], reason: "company vehicle, not for sale"}
"""


def dublin_export(vehicles: int, seed: int = 7) -> str:
    """An export of `vehicles` cars for sale plus COMPANY_CARS company cars: Irish plates, model years only, km, EUR."""
    rng = random.Random(seed)
    cars = []
    for number in range(vehicles + COMPANY_CARS):
        make, model, engine, code = MAKES[number % len(MAKES)]
        new = number % 5 == 0
        year = 2026 if new else rng.randint(2014, 2024)
        plate = "" if new else f"{str(year)[2:]}{rng.choice('12')}-{rng.choice(COUNTIES)}-{rng.randint(1, 99999)}"
        km = 0 if new else rng.randint(8_000, 60_000) * (2026 - year)
        photos = "".join(f'<dl:Photo Src="https://img.dublin-dms.test/{number}/{n}.jpg"/>' for n in range(1, 8))
        cars.append(
            f'<dl:Car Ref="DUB{number:04d}" Chassis="TMBJJ7NE{number:09d}" Reg="{plate}" Make="{make}" Model="{model}" Spec="{engine} {model.title()} SE" '
            f'Engine="{engine}" EngineCode="{code}" Box="{"A" if number % 2 else "M"}" Body="{rng.choice(["HATCH", "ESTATE", "SUV", "SALOON"])}" Colour="{rng.choice(["BLUE", "GREY", "WHITE"])}" '
            f'Km="{km}" ModelYear="{year}" Condition="{"NEW" if new else "USED"}" State="FORSALE" PriceEUR="{rng.randint(9, 45) * 1000 + 950}" '
            f'Cost="{COST_MARK}" Use="{"COMPANY" if number >= vehicles else "RETAIL"}"><dl:Advert>A fine {model.title()}.</dl:Advert>{photos}</dl:Car>'
        )
    return '<?xml version="1.0" encoding="UTF-8"?>\n<dl:Stock xmlns:dl="urn:example:dublin-dms:1">\n' + "\n".join(cars) + "\n</dl:Stock>\n"


@pytest.fixture
def dublin(paths, data_root):
    """The group's configuration with an Irish rooftop on Google, Meta and its website, and the Dublin profile in the data root."""
    config_file = data_root / "config" / "dms_pipelines.yaml"
    raw = yaml.safe_load(config_file.read_text())
    raw["dealers"].append(
        {
            "id": "dublin",
            "name": "Aire Valley Motors Dublin",
            "address": {"street": "12 Naas Road", "city": "Dublin", "postcode": "D12 X5F2", "country": "IE"},
            "phone": "+353 1 496 0000",
            "website": "https://www.airevalleymotors.example/dublin",
            "source": {"kind": "local_inbox"},
            "profile": "dublin_attr_xml",
            "market": {"country": "IE"},
            "urls": {"used": "{website}/used/{stock_id_lower}", "new": "{website}/new/{make}/{stock_id_lower}"},
            "marketplaces": {"google": {"store_code": "AVM-DUBLIN"}, "website": {}, "meta": {"catalog_id": "AVM-DUBLIN"}},
        }
    )
    config_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    (data_root / "profiles").mkdir(exist_ok=True)
    (data_root / "profiles" / "dublin_attr_xml.yaml").write_text(PROFILE)
    export = data_root / "sample" / "cars_full_20261202_0200.xml"
    export.parent.mkdir()
    export.write_text(dublin_export(40))
    return export


def profile_check(capsys, *args) -> tuple[int, dict]:
    code = main(["profile", "check", *args, "--format", "json"])
    return code, json.loads(capsys.readouterr().out)


def test_profile_check_guides_the_onboarding_and_the_run_brings_every_saleable_car_into_stock(paths, dublin, capsys):
    code, report = profile_check(capsys, "dublin_attr_xml", str(dublin), "--dealer", "dublin")
    assert code == 0 and report["ok"]
    assert report["records_in_file"] == 42 and report["rows"] == 40 and report["skipped"] == {"company vehicle, not for sale": COMPANY_CARS}
    assert report["unread_sources"] == []  # every attribute is read by a field or by the skip rule
    rules = {(r["field"], r["rule"]) for r in report["rules"]}
    assert not rules & {("registration", "plate_format"), ("mileage", "mileage_implausible"), ("registration", "required")}  # no UK-only rule fires
    assert report["quarantined"] == 0 and report["accepted"] == 40
    fields = {f["name"]: f for f in report["fields"]}
    assert fields["make"]["samples"][0] in {"Toyota", "Skoda", "Volkswagen", "Hyundai"} and fields["engine_size_cc"]["fill_rate"] == 1.0
    assert fields["private_cost_price"]["samples"] == ["(private: not shown)"]
    markets = {m["name"]: m for m in report["marketplaces"]}
    assert set(markets) == {"google", "website", "meta"} and all(m["error"] is None for m in markets.values())
    assert markets["website"]["listed"] == 40

    (paths.inbox / "dublin").mkdir(parents=True)
    (paths.inbox / "dublin" / dublin.name).write_bytes(dublin.read_bytes())
    assert main(["run", "--dealer", "dublin"]) == 0
    out = capsys.readouterr().out
    assert "vehicles in 40, accepted 40, quarantined 0 (0 issues), skipped by profile 2" in out
    stock = read_stock(paths.state, "dublin")
    assert len(stock) == 40 and set(stock["fuel_type"]) == {"hybrid", "diesel", "plugin_hybrid", "petrol"}
    google = (paths.outbox / "google" / "vehicle_listings.csv").read_text(encoding="utf-8")
    dublin_rows = [line for line in google.splitlines() if "AVM-DUBLIN" in line]
    assert dublin_rows and all(" EUR" in line and " km" in line and " GBP" not in line for line in dublin_rows)
    assert "/dublin/new/toyota/dub0000" in google  # the new-car URL template
    for path in Path(paths.outbox).rglob("*"):
        if path.is_file():
            assert COST_MARK not in path.read_text(encoding="utf-8", errors="replace"), path  # no cost reaches any feed


def test_a_misspelt_attribute_on_a_required_field_fails_the_check_naming_the_field_and_the_fix(paths, dublin, capsys):
    broken = paths.root / "profiles" / "dublin_attr_xml.yaml"
    broken.write_text(PROFILE.replace('make: {xpath: "@Make"', 'make: {xpath: "@Mkae"'))
    code = main(["profile", "check", str(broken), str(dublin)])
    out = capsys.readouterr().out
    assert code == 1
    assert "make" in out and "@Mkae" in out and "@Make" in out


def test_a_key_typo_and_a_misspelt_field_are_refused_with_suggestions(paths, dublin, capsys):
    broken = paths.root / "profiles" / "dublin_attr_xml.yaml"
    broken.write_text(PROFILE.replace("  colour: {xpath:", "  color: {xpath:").replace('vin: {xpath: "@Chassis"}', 'vin: {xpth: "@Chassis"}'))
    assert main(["profile", "check", "dublin_attr_xml", str(dublin)]) == 1
    err = capsys.readouterr().err
    assert "dublin_attr_xml.yaml" in err and "colour" in err and "xpath" in err


def test_an_xpath_syntax_error_names_the_field_and_the_expression(paths, dublin, capsys):
    broken = paths.root / "profiles" / "dublin_attr_xml.yaml"
    broken.write_text(PROFILE.replace('vin: {xpath: "@Chassis"}', 'vin: {xpath: "@@Chassis"}'))
    assert main(["profile", "check", "dublin_attr_xml", str(dublin)]) == 1
    err = capsys.readouterr().err
    assert "fields.vin" in err and "@@Chassis" in err
