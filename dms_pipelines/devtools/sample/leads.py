"""Synthetic leads for the demo's stock on every channel: Meta CSV exports and ADF e-mails for the lead inbox, website and Google form payloads, Auto Trader deals."""

import csv
import io
import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from pathlib import Path

import pandas as pd

from dms_pipelines.kernels.atomic import write_bytes_atomically

FIRST_NAMES = ("Amelia", "Oliver", "Isla", "George", "Ava", "Harry", "Mia", "Noah", "Sofia", "Jack", "Freya", "Leo")
LAST_NAMES = ("Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Patel", "Robinson", "Wright", "Khan")
POSTCODES = ("LS3 1JL", "YO31 7UZ", "S6 3AE", "HG1 2AB", "BD1 4QQ", "WF1 2EE", "HX1 1AA", "DN1 3NJ")
MESSAGES = ("Is this still available?", "Can I book a test drive on Saturday?", "What finance options do you have?", "Would you take my car in part exchange?", "Best price?")
CONSENT_WORDING = "I would like to hear about offers from Aire Valley Motors by email, phone, SMS and post."
META_HEADER = (
    "id",
    "created_time",
    "ad_id",
    "ad_name",
    "adset_id",
    "campaign_id",
    "form_id",
    "form_name",
    "is_organic",
    "platform",
    "retailer_item_id",
    "full_name",
    "email",
    "phone_number",
    "post_code",
    "email_marketing_consent",
)


@dataclass
class SampleLeads:
    """What was written for one dealer: files in its lead inbox, and payloads for the receiver and the deal simulator."""

    inbox_files: list[Path] = field(default_factory=list)
    website: list[dict] = field(default_factory=list)  # website form posts (some with utm_source=carsnip)
    google: list[dict] = field(default_factory=list)  # Google lead form posts (google_key left for the sender to add)
    deals: list[dict] = field(default_factory=list)  # Auto Trader deals: {"deal": ..., "components": ...}
    malformed: int = 0
    repeats: int = 0


class _People:
    def __init__(self, rng: random.Random, dealer_id: str):
        self.rng, self.dealer_id, self.count = rng, dealer_id, 0

    def next(self) -> dict:
        self.count += 1
        first, last = self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)
        return {
            "first_name": first,
            "last_name": last,
            "email": f"{first}.{last}.{self.dealer_id}{self.count}@example.com".lower(),
            "phone": f"07700 9{self.rng.randrange(0, 100000):05d}",
            "postcode": self.rng.choice(POSTCODES),
            "message": self.rng.choice(MESSAGES),
            "consent": self.rng.random() < 0.5,
        }


def _meta_csv(rows: list[dict]) -> bytes:
    """A Meta lead ads export of one form, as Meta writes it: UTF-16 LE with a byte-order mark, tab-separated."""
    text = io.StringIO()
    writer = csv.writer(text, delimiter="\t", lineterminator="\n")
    writer.writerow(META_HEADER)
    for row in rows:
        writer.writerow([row.get(column, "") for column in META_HEADER])
    return "\ufeff".encode("utf-16-le") + text.getvalue().encode("utf-16-le")


def _adf(lead_id: str, person: dict, vehicle: dict, at: datetime) -> str:
    from xml.sax.saxutils import escape

    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<?adf version="1.0"?>\n<adf><prospect status="new">'
        f'<id sequence="1" source="Carsnip">{escape(lead_id)}</id><requestdate>{at.isoformat()}</requestdate>'
        f'<vehicle interest="buy" status="used"><year>{int(vehicle.get("year") or 2020)}</year><make>{escape(str(vehicle["make"]))}</make>'
        f"<model>{escape(str(vehicle['model']))}</model><stock>{escape(str(vehicle['stock_id']))}</stock></vehicle>"
        f'<customer><contact><name part="first">{escape(person["first_name"])}</name><name part="last">{escape(person["last_name"])}</name>'
        f'<email>{escape(person["email"])}</email><phone type="voice">{escape(person["phone"])}</phone></contact>'
        f"<comments>{escape(person['message'])}</comments></customer>"
        # real senders: no vendorname, an element the DTD does not know
        '<vendor><contact><name part="full">Sales</name><phone>0113 496 0120</phone></contact></vendor><leadtype>used</leadtype>'
        '<provider><name part="full">Carsnip</name></provider></prospect></adf>\n'
    )


def _eml(adf_text: str, at: datetime, number: int) -> bytes:
    mail = EmailMessage()
    mail["From"] = "leads@carsnip.example"
    mail["To"] = "crm-leads@airevalleymotors.example"
    mail["Subject"] = f"New enquiry {number}"
    mail["Date"] = at.strftime("%a, %d %b %Y %H:%M:%S +0000")
    mail.set_content(adf_text)
    return bytes(mail)


def generate_leads(stock: pd.DataFrame, dealer_id: str, inbox: Path, seed: int = 7, now: datetime | None = None, sold_stock_id: str | None = None, hostile: bool = False) -> SampleLeads:
    """Leads about the dealer's stock on every channel: about a third on cars that are (or are about to be) sold, a repeat
    of an ADF e-mail and of a Meta lead, malformed ones (no contact, a broken e-mail), consent given and refused; with
    `hostile`, also an XML file with an external entity (refused whole: a failed file the operator must acknowledge)."""
    rng = random.Random(f"{seed}-{dealer_id}")
    now = now or datetime.now(timezone.utc)
    people = _People(rng, dealer_id)
    out = SampleLeads()
    if stock.empty:
        return out
    cars = stock.to_dict("records")
    sold = [car for car in cars if car.get("status") == "sold" or car.get("stock_id") == sold_stock_id]

    def car() -> dict:
        return rng.choice(sold) if sold and rng.random() < 0.3 else rng.choice(cars)

    meta_rows = []
    for number in range(6):
        person, vehicle = people.next(), car()
        meta_rows.append(
            {
                "id": f"l:{dealer_id}{900000 + number}",
                "created_time": (now - timedelta(minutes=50 - number)).strftime("%Y-%m-%dT%H:%M:%S+0000"),
                "ad_id": "120210000000001",
                "ad_name": "Used stock catalogue",
                "adset_id": "120210000000002",
                "campaign_id": "120210000000003",
                "form_id": "4455667788",
                "form_name": "Vehicle enquiry",
                "is_organic": "false",
                "platform": rng.choice(("fb", "ig")),
                "retailer_item_id": vehicle["stock_id"],
                "full_name": f"{person['first_name']} {person['last_name']}",
                "email": person["email"],
                "phone_number": person["phone"],
                "post_code": person["postcode"],
                "email_marketing_consent": "yes" if person["consent"] else "no",
            }
        )
    meta_rows.append(dict(meta_rows[0]))  # Meta has no idempotency contract: the same lead in the next export too
    meta_rows.append({**meta_rows[1], "id": f"l:{dealer_id}900099", "email": "not-an-email", "phone_number": "12"})  # no usable contact
    out.repeats += 1
    out.malformed += 1
    inbox.mkdir(parents=True, exist_ok=True)
    path = inbox / f"meta_leads_{dealer_id}_{now:%Y%m%d%H%M}.csv"
    write_bytes_atomically(path, _meta_csv(meta_rows))
    out.inbox_files.append(path)

    person, vehicle = people.next(), car()
    adf_text = _adf(f"CS-{dealer_id}-1001", person, vehicle, now - timedelta(minutes=30))
    for copy in (1, 2):  # a repeat sender: the same ADF lead in two e-mails
        path = inbox / f"carsnip_lead_{dealer_id}_{copy}.eml"
        write_bytes_atomically(path, _eml(adf_text, now - timedelta(minutes=30 - copy), copy))
        out.inbox_files.append(path)
    out.repeats += 1
    if hostile:
        path = inbox / f"broken_lead_{dealer_id}.xml"
        write_bytes_atomically(path, b'<?xml version="1.0"?>\n<!DOCTYPE adf [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n<adf><prospect>&x;</prospect></adf>\n')
        out.inbox_files.append(path)
        out.malformed += 1

    for number in range(3):
        person, vehicle = people.next(), car()
        out.website.append(
            {
                "enquiry_id": f"W-{dealer_id}-{5000 + number}",
                "submitted_at": (now - timedelta(minutes=20 - number)).isoformat(),
                "stock_id": vehicle["stock_id"],
                "first_name": person["first_name"],
                "last_name": person["last_name"],
                "email": person["email"],
                "phone": person["phone"],
                "postcode": person["postcode"],
                "message": person["message"],
                "part_exchange": number == 0,
                "part_exchange_details": "2017 Ford Focus, 61,000 miles" if number == 0 else "",
                "finance": number == 1,
                "consent": {"email": person["consent"], "phone": False, "sms": False, "post": person["consent"], "wording": CONSENT_WORDING, "at": now.isoformat()},
                "utm_source": "carsnip" if number == 2 else "",
                "utm_medium": "referral" if number == 2 else "",
                "page_url": f"https://www.airevalleymotors.example/{dealer_id}/used/{vehicle['stock_id']}",
            }
        )
    person, vehicle = people.next(), car()
    out.google.append(
        {
            "lead_id": f"G-{dealer_id}-7001",
            "api_version": "1.0",
            "form_id": 5566,
            "campaign_id": 7788,
            "is_test": False,
            "gcl_id": "CjwKCAiA",
            "user_column_data": [
                {"column_id": "FULL_NAME", "string_value": f"{person['first_name']} {person['last_name']}"},
                {"column_id": "EMAIL", "string_value": person["email"]},
                {"column_id": "PHONE_NUMBER", "string_value": person["phone"]},
                {"column_id": "POSTAL_CODE", "string_value": person["postcode"]},
                {"column_id": "VEHICLE_STOCK_ID", "string_value": str(vehicle["stock_id"])},
            ],
        }
    )
    out.google.append({**out.google[0], "lead_id": f"G-{dealer_id}-7002", "is_test": True})  # the form's test lead: left out, counted
    person, vehicle = people.next(), car()
    out.deals.append(
        {
            "deal": {
                "consumer": {
                    "firstName": person["first_name"],
                    "lastName": person["last_name"],
                    "email": person["email"],
                    "phone": person["phone"],
                    "postcode": person["postcode"],
                    "marketingPreferences": {"email": "Y" if person["consent"] else "N", "phone": "N", "sms": "N", "post": "N", "wording": CONSENT_WORDING, "time": now.isoformat()},
                },
                "stock": {"externalStockReference": str(vehicle["stock_id"]), "registration": str(vehicle.get("registration") or "")},
                "messages": {"lastMessage": person["message"]},
                "advertiserDealStatus": "In progress",
            },
            "components": {"partExchange": {"vehicle": {"registration": "AB12CDE", "make": "Vauxhall", "model": "Corsa", "mileage": 48000}, "valuation": 3200}},
        }
    )
    return out


def write_payloads(leads: SampleLeads, folder: Path) -> list[Path]:
    """The website and Google payloads as JSON files (for a test or a manual post), one per lead."""
    paths = []
    for kind, payloads in (("website", leads.website), ("google", leads.google)):
        for number, payload in enumerate(payloads, start=1):
            path = folder / f"{kind}_{number}.json"
            write_bytes_atomically(path, json.dumps(payload, indent=2).encode())
            paths.append(path)
    return paths
