"""Builders and shared values of the tests: test modules and conftest.py import them from here, never from each other."""

import codecs
import gzip
import io
import json
import os
import random
import threading
import zipfile
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pandas as pd
import yaml

from dms_pipelines.config import Address, Dealer, DealerMarketplace, LocalInboxSource
from dms_pipelines.devtools.demo import SAMPLE_CONFIG
from dms_pipelines.sources.sftp import SftpSettings
from dms_pipelines.stock.merge import apply_full
from dms_pipelines.stock.schema import coerce_to_schema

# --- the test configuration ----------------------------------------------------------------------------------------------

COMMITTED_CONFIG = SAMPLE_CONFIG  # the packaged sample configuration (the one copy; `make demo` writes it into data/config)
TEST_TOKEN = "test-token-not-a-secret"


def config_without_images() -> dict:
    """The sample configuration as most tests run it: without the dealers' images sections, since the image URLs of the
    tests' stock name hosts outside the machine (the image stage's own tests serve their images on loopback)."""
    raw = yaml.safe_load(COMMITTED_CONFIG.read_text())
    for dealer in raw["dealers"]:
        dealer.pop("images", None)
    return raw


# --- counters the hostile-input and fault tests add to; conftest.py prints them at the end of the test run ----------------

STATS: Counter = Counter()

# --- a real local webhook that records every alert posted to it, for the tests of alerts and incidents --------------------


class AlertHook:
    """Listens on a free loopback port until closed; `received` holds each alert's JSON body, in order."""

    def __init__(self):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hook"

    def kinds(self) -> list[str]:
        return [alert["kind"] for alert in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- DMS exports: Navigator CSV rows, the pipe-separated header, STAR 5 XML documents -------------------------------------

NAVIGATOR_HEADER = (
    "Stock,Reg,ChassisNo,Make,Model,Derivative,Trim,BodyType,FuelType,Transmission,Doors,Seats,EngineSize,CO2,Colour,"
    "Mileage,RegDate,Year,Type,NewUsed,Retail,WebPrice,PreviousPrice,GuideRetailprice,VATStatus,OrderStatus,"
    "AvailableForSale,AdvertiseOnWeb,DateInStock,MOTExpiry,AdvertisingText,Features,Images,EngineNo,KeyTagNo,KeyCode,"
    "AlarmCode,EstimatedPrepCosts,CostPrice,InternalMemo,PreviousKeeper,Location,NoOfPreviousOwners,UserDefinedData"
)


def navigator_row(stock: str, price: str = "12995", description: str = "Lovely car", reg: str = "AB71CDE") -> str:
    values = {
        "Stock": stock,
        "Reg": reg,
        "ChassisNo": "WF0XXXGCDXKA12345",
        "Make": "Ford",
        "Model": "Fiesta",
        "Derivative": "1.0 EcoBoost Titanium 5dr",
        "Trim": "Titanium",
        "BodyType": "Hatchback",
        "FuelType": "Petrol",
        "Transmission": "Manual",
        "Doors": "5",
        "Seats": "5",
        "EngineSize": "999",
        "CO2": "110",
        "Colour": "Blue",
        "Mileage": "20000",
        "RegDate": "05/10/21",
        "Year": "2021",
        "Type": "Car",
        "NewUsed": "Used",
        "WebPrice": price,
        "VATStatus": "Marginal",
        "OrderStatus": "In Stock",
        "DateInStock": "01/11/2026",
        "AdvertisingText": description,
        "Features": "A/C;Sat Nav",
        "Images": "https://i.example/1.jpg;https://i.example/2.jpg",
        "KeyCode": "K-77",
        "CostPrice": "9000",
        "InternalMemo": "PX from Mrs Smith",
        "PreviousKeeper": "Mrs Smith",
    }
    return ",".join(values.get(name, "") for name in NAVIGATOR_HEADER.split(","))


PIPE_HEADER = "STOCK_NO|VRM|VIN|MANUFACTURER|RANGE|VARIANT|TRIM_LEVEL|BODY|FUEL|GEARBOX|DOORS|SEATS|CC|CO2|EURO|COLOUR|MILEAGE|REG_DATE|MODEL_YEAR|PRICE|WAS_PRICE|VAT|CONDITION|STATUS|DATE_IN|MOT_DUE|DESCRIPTION|EQUIPMENT|PHOTOS|COST|KEY_SAFE|NOTES|PREV_KEEPER"


STAR5_NAMESPACE = "http://www.starstandard.org/STAR/5"


def star_item(stock: str, price: str = "18995") -> str:
    return f"""<VehicleInventoryVehicleLineItem>
  <StockNumberID>{stock}</StockNumberID><InventoryStatusCode>AV</InventoryStatusCode><InventoryDate>2026-10-01</InventoryDate>
  <Vehicle><MakeString>Kia</MakeString><ModelDescription>Sportage</ModelDescription><ModelYear>2022</ModelYear>
    <VehicleID>U5YPG81ABNL123456</VehicleID><Condition>U</Condition><VehicleDescription>1.6 T-GDi 3 5dr</VehicleDescription>
    <BodyStyle>SUV</BodyStyle><VehicleNote>One owner &amp; FSH</VehicleNote>
    <ColorGroup><ColorItemCode>Interior</ColorItemCode><ColorName>Black</ColorName></ColorGroup>
    <ColorGroup><ColorItemCode>Exterior</ColorItemCode><ColorName>Grey</ColorName></ColorGroup>
    <TransmissionGroup><TransmissionTypeName>A</TransmissionTypeName></TransmissionGroup>
    <Engine><GeneralEngineDescription>1598</GeneralEngineDescription><FuelTypeCode>H</FuelTypeCode></Engine>
    <LicenseNumberString>YD22 ABC</LicenseNumberString><FirstRegistrationDate>2022-03-10</FirstRegistrationDate>
    <DeliveryDistanceMeasure>18000</DeliveryDistanceMeasure>
    <Pricing><Price><PriceCode>List</PriceCode><ChargeAmount>{price}</ChargeAmount></Price><Price><PriceCode>Cost</PriceCode><ChargeAmount>15000</ChargeAmount></Price></Pricing>
    <FeatureGroup><FeatureDescription>Heated seats</FeatureDescription></FeatureGroup><FeatureGroup><FeatureDescription>Reversing camera</FeatureDescription></FeatureGroup>
    <ImageAttachment><URI>https://i.example/1.jpg</URI></ImageAttachment><ImageAttachment><URI>https://i.example/2.jpg</URI></ImageAttachment>
  </Vehicle><InternalNote>Needs tyres</InternalNote><KeyNumberID>K9</KeyNumberID>
</VehicleInventoryVehicleLineItem>"""


def star_document(*items: str, prolog: str = "") -> str:
    return f'<?xml version="1.0" encoding="UTF-8"?>{prolog}<ShowVehicleInventory xmlns="{STAR5_NAMESPACE}"><DataArea><VehicleInventory>{"".join(items)}</VehicleInventory></DataArea></ShowVehicleInventory>'


# --- a corpus of hostile DMS exports, generated by code: every way a real export goes wrong, plus attacks ----------------

PARSES, REFUSED, EITHER = "parses", "refused", "either"
PIPE_ROW = "S0042|YC19ABC|VF1RJA00X12345678|Citroën|C3|1.2 PureTech Shine|Shine|Hatchback|P|M|5|5|1199|104|Euro 6|Red|31000|15/04/19|2019|£9,995|£10,495|M|U|AV|02/11/26|01/05/27|Great value – FSH|Bluetooth,Cruise|https://i.example/a.jpg|£7,000|12|Mr Keeper|Mr Keeper"
SECRET_FILE_MARKER = "root:x:0:0"  # what /etc/passwd holds: must never appear in any output


@dataclass(frozen=True)
class HostileFile:
    name: str
    profile: str
    content: bytes
    expect: str
    rows: int | None = None  # canonical rows expected when it parses


def csv_lines(*rows: str, header: str = NAVIGATOR_HEADER, end: str = "\r\n") -> str:
    return end.join([header, *rows]) + end


def corpus() -> list[HostileFile]:
    good = [navigator_row(f"00{n}") for n in range(1, 4)]
    files = [
        HostileFile("stock_full_cp1252.csv", "navigator_csv", csv_lines(*good, navigator_row("0099", description="Café £500 off – now")).encode("cp1252"), PARSES, 4),
        HostileFile("stock_full_bom.csv", "navigator_csv", codecs.BOM_UTF8 + csv_lines(*good).encode(), PARSES, 3),
        HostileFile("stock_full_utf16.csv", "navigator_csv", csv_lines(*good).encode("utf-16"), PARSES, 3),
        HostileFile("stock_full_mixed.csv", "navigator_csv", csv_lines(good[0]).encode() + navigator_row("0100", description="caf\xe9").encode("cp1252") + b"\r\n" + "€ café".encode(), EITHER),
        HostileFile("stock_full_semicolon.csv", "navigator_csv", csv_lines(*[r.replace(",", ";") for r in good], header=NAVIGATOR_HEADER.replace(",", ";")).encode(), REFUSED),
        HostileFile("stock_full_tab.csv", "navigator_csv", csv_lines(*[r.replace(",", "\t") for r in good], header=NAVIGATOR_HEADER.replace(",", "\t")).encode(), REFUSED),
        HostileFile(
            "stock_full_quoted_newlines.csv",
            "navigator_csv",
            csv_lines(good[0], navigator_row("0200", description='"line one\nline two, with comma"').replace('""line one', '"line one').replace('comma""', 'comma"')).encode(),
            PARSES,
            2,
        ),
        HostileFile("stock_full_ragged.csv", "navigator_csv", csv_lines(good[0], good[1] + ",extra,cells", ",".join(good[2].split(",")[:10])).encode(), PARSES, 1),
        HostileFile("stock_full_no_header.csv", "navigator_csv", "\r\n".join(good).encode(), REFUSED),
        HostileFile("stock_full_dup_header.csv", "navigator_csv", csv_lines(good[0] + ",x", header=NAVIGATOR_HEADER + ",Stock").encode(), REFUSED),
        HostileFile("stock_full_extra_columns.csv", "navigator_csv", csv_lines(*[r + ",a,b" for r in good], header=NAVIGATOR_HEADER + ",Surprise,Another").encode(), PARSES, 3),
        HostileFile("stock_full_empty.csv", "navigator_csv", b"", REFUSED),
        HostileFile("stock_full_whitespace.csv", "navigator_csv", b"\r\n  \r\n", REFUSED),
        HostileFile("stock_full_header_only.csv", "navigator_csv", csv_lines().encode(), PARSES, 0),
        HostileFile("stock_full_cut_mid_row.csv", "navigator_csv", csv_lines(*good).encode()[:-120], PARSES, 2),
        HostileFile("stock_full_cut_in_quote.csv", "navigator_csv", (csv_lines(*good) + navigator_row("0300", description='"never closed')).encode(), EITHER),
        HostileFile("stock_full_binary.csv", "navigator_csv", bytes(random.Random(1).randrange(256) for _ in range(50_000)), REFUSED),
        HostileFile("stock_full_nul_bytes.csv", "navigator_csv", csv_lines(navigator_row("0400", description="nul\x00inside")).encode(), EITHER),
        HostileFile("stock_full_huge_field.csv", "navigator_csv", csv_lines(navigator_row("0500", description="x" * (50 << 20))).encode(), EITHER),
        HostileFile(
            "stock_full_numbers.csv",
            "navigator_csv",
            csv_lines(navigator_row("000123", price='"£12,995"'), navigator_row("1E10", price=" 9995 "), navigator_row("NULL", price='"9,995.00"')).encode(),
            PARSES,
            3,
        ),
        HostileFile(
            "stock_full_dates.csv",
            "navigator_csv",
            csv_lines(*[navigator_row(f"D{n}").replace("01/11/2026", d) for n, d in enumerate(["01/11/2026", "01/11/26", "2026-11-01", "1 Nov 2026"])]).encode(),
            PARSES,
            4,
        ),
        HostileFile("stock_full_formula.csv", "navigator_csv", csv_lines(navigator_row("0600", description='=HYPERLINK("http://x")')).encode(), PARSES, 1),
        HostileFile("stock_full_lf_only.csv", "navigator_csv", csv_lines(*good, end="\n").encode(), PARSES, 3),
        HostileFile("stock_full_cr_only.csv", "navigator_csv", csv_lines(*good, end="\r").encode(), EITHER),
        HostileFile("stock_full_trailing_blank_lines.csv", "navigator_csv", (csv_lines(*good) + "\r\n\r\n\r\n").encode(), PARSES, 3),
        HostileFile("stock_full_spaced_header.csv", "navigator_csv", csv_lines(*good, header=", ".join(NAVIGATOR_HEADER.split(","))).encode(), EITHER),
        HostileFile("export_full_cp1252.txt", "pipe_cp1252_csv", csv_lines(PIPE_ROW, header=PIPE_HEADER).encode("cp1252"), PARSES, 1),
        HostileFile("export_full_utf8.txt", "pipe_cp1252_csv", csv_lines(PIPE_ROW, header=PIPE_HEADER).encode("utf-8"), PARSES, 1),
        HostileFile("export_full_commas.txt", "pipe_cp1252_csv", csv_lines(PIPE_ROW.replace("|", ","), header=PIPE_HEADER.replace("|", ",")).encode(), REFUSED),
        HostileFile("inventory_full_ok.xml", "star5_xml", star_document(star_item("Y1"), star_item("Y2")).encode(), PARSES, 2),
        HostileFile("inventory_full_malformed.xml", "star5_xml", star_document(star_item("Y1")).encode()[:-60], REFUSED),
        HostileFile("inventory_full_xxe.xml", "star5_xml", star_document(star_item("&xxe;"), prolog='<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>').encode(), REFUSED),
        HostileFile(
            "inventory_full_laughs.xml",
            "star5_xml",
            star_document(
                star_item("&lol9;"),
                prolog="<!DOCTYPE lolz [" + '<!ENTITY lol "lol">' + "".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10)) + "]>",
            ).encode(),
            REFUSED,
        ),
        HostileFile("inventory_full_external_dtd.xml", "star5_xml", star_document(star_item("Y1"), prolog='<!DOCTYPE r SYSTEM "http://attacker.example/evil.dtd">').encode(), REFUSED),
        HostileFile("inventory_full_doctype_after_comment.xml", "star5_xml", star_document(star_item("Y1"), prolog='<!-- hi --><!DOCTYPE r [<!ENTITY x "y">]>').encode(), REFUSED),
        HostileFile("inventory_full_deep.xml", "star5_xml", (b"<a>" * 300_000) + (b"</a>" * 300_000), REFUSED),
        HostileFile("inventory_full_wrong_ns.xml", "star5_xml", star_document(star_item("Y1")).replace("STAR/5", "STAR/4").encode(), REFUSED),
        HostileFile("inventory_full_utf16.xml", "star5_xml", star_document(star_item("Y1")).replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16"), PARSES, 1),
        HostileFile("inventory_full_garbage.xml", "star5_xml", bytes(random.Random(2).randrange(256) for _ in range(20_000)), REFUSED),
        HostileFile("stock_full_gzip_bomb.csv.gz", "navigator_csv", gzip.compress(b"0" * (64 << 20)), REFUSED),
        HostileFile("stock_full_zip_escape.csv.zip", "navigator_csv", _zip({"../../stock_full_x.csv": csv_lines(*good).encode()}), REFUSED),
        HostileFile("stock_full_zip_ok.csv.zip", "navigator_csv", _zip({"stock_full_x.csv": csv_lines(*good).encode()}), PARSES, 3),
        HostileFile("stock_full_not_gzip.csv.gz", "navigator_csv", b"plain text pretending", REFUSED),
    ]
    return files


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


HOSTILE_REMOTE_NAMES = ["../../etc/passwd.csv", "stock full with spaces.csv", "stock_fülł_ünïcødé_🚗.csv", "s" * 300 + ".csv", "..\\..\\windows.csv", ".hidden.csv", "/absolute/stock.csv"]


# --- vehicles for the row rules, merges and history ------------------------------------------------------------------------

VALID_VEHICLE_IMAGES = "|".join(f"https://i.example/{n}.jpg" for n in range(8))


def valid_vehicle(stock_id: str, **changes) -> dict:
    """A plain canonical vehicle that passes every row rule (the row-rule, merge and history tests); `changes` override fields."""
    base = {
        "dealer_id": "leeds",
        "stock_id": stock_id,
        "vin": f"WF0XXXGCDXKA{int(stock_id[-3:]):05d}",
        "registration": "AB71CDE",
        "make": "Ford",
        "model": "Fiesta",
        "condition": "used",
        "status": "available",
        "year": 2021,
        "first_registration_date": pd.Timestamp("2021-10-05"),
        "mileage": 30000,
        "price": 12995.0,
        "description": "Clean car, FSH",
        "features": "A/C|Sat Nav",
        "image_urls": VALID_VEHICLE_IMAGES,
        "source_file": "stock_full_x.csv",
    }
    base.update(changes)
    return base


NIGHT = datetime(2026, 11, 21, 2, 30, tzinfo=timezone.utc)
HOUR = datetime(2026, 11, 21, 9, 5, tzinfo=timezone.utc)


def stock_of(rows: list[dict]) -> pd.DataFrame:
    return apply_full(coerce_to_schema(pd.DataFrame([valid_vehicle("S000")]).iloc[:0]), coerce_to_schema(pd.DataFrame(rows)), set()).stock


# --- a small fixed stock and dealer for the marketplace tests, with the awkward cases every feed must survive -------------

GOLDEN = Path(__file__).parent / "marketplaces" / "golden"  # the feeds' golden files (UPDATE_GOLDEN=1 rewrites them)
PRIVATE_MARKERS = ("SECRET-KEY-123", "Mrs Private Keeper", "MEMO-PX-9931", "7777.77", "123.45")
FEED_VEHICLE_IMAGES = "|".join(f"https://img.example/{n}.jpg" for n in range(1, 9))


def feed_vehicle(stock_id: str, **changes) -> dict:
    """A vehicle with every field the feeds use, private values included (the marketplace tests); `changes` override fields."""
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
        "image_urls": FEED_VEHICLE_IMAGES,
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
                feed_vehicle("A0001"),
                feed_vehicle("A0002", status="reserved", make="Kia", model="Sportage", body_type="suv", fuel_type="hybrid", transmission="automatic", price=23495.0),
                feed_vehicle("A0003", status="sold"),
                feed_vehicle("A0004", description='=HYPERLINK("http://evil.example","click")', trim="+44 trim"),
                feed_vehicle("A0005", description="<p>Great&nbsp;car<br>\x07with <b>FSH</b></p>\x00"),
                feed_vehicle("A0006", description=("Long words here " * 400).strip()),
                feed_vehicle("A0007", vin="SHORTVIN"),
                feed_vehicle(
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


# --- the SFTP source's settings for the test sshd, and files put on it ----------------------------------------------------


def settings_for(server, remote_dir: Path, **changes) -> SftpSettings:
    """The SFTP source's settings for `remote_dir` on the test sshd `server`; `changes` override them."""
    values = dict(
        host=server.host,
        port=server.port,
        username=server.username,
        known_hosts=server.known_hosts,
        remote_dir=str(remote_dir),
        patterns=("*.csv", "*.xml", "*.txt", "*.gz"),
        private_key_path=server.client_key_path,
        connect_timeout=5,
        channel_timeout=5,
        transfer_timeout=10,
    )
    values.update(changes)
    return SftpSettings(**values)


def put(folder: Path, name: str, content: bytes, mtime: float | None = None) -> Path:
    """A file written into `folder` (on the sshd or off it), with the modification time `mtime` when given."""
    path = folder / name
    path.write_bytes(content)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def problems_of(raw: dict) -> str:
    """Why the registry refuses the configuration `raw` (it must refuse it)."""
    import pytest

    from dms_pipelines.config import ConfigError, parse_settings
    from dms_pipelines.marketplaces.registry import published_specs

    with pytest.raises(ConfigError) as caught:
        published_specs(parse_settings(raw, "test.yaml"))
    return str(caught.value)
