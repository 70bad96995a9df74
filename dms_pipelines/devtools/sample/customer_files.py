"""Render canonical customers as the bytes of a DMS customer export in a built-in layout (Navigator CSV, STAR 5 XML)."""

import csv
import io
from datetime import datetime

import pandas as pd
from lxml import etree

from dms_pipelines.customers.schema import CUSTOMER_COLUMNS, LIST_SEPARATOR, TIME_COLUMNS, coerce_to_schema

LAYOUTS = ("navigator_customers_csv", "star5_customers_xml")
STAR_NAMESPACE = "http://www.starstandard.org/STAR/5"
NAVIGATOR_COLUMNS = {  # the Navigator header -> the canonical field
    "CustomerNo": "customer_number",
    "Title": "title",
    "Forename": "first_name",
    "Surname": "last_name",
    "CompanyName": "company_name",
    "Email": "email",
    "MobileTel": "phone_mobile",
    "HomeTel": "phone_home",
    "WorkTel": "phone_work",
    "Address1": "address_line1",
    "Address2": "address_line2",
    "Town": "town",
    "County": "county",
    "PostCode": "postcode",
    "VehiclesOwned": "owned_vehicles",
    "EmailOptIn": "consent_email",
    "PhoneOptIn": "consent_phone",
    "SMSOptIn": "consent_sms",
    "PostOptIn": "consent_post",
    "ConsentText": "consent_wording",
    "ConsentDate": "consent_updated_at",
    "LastUpdated": "updated_at",
}
CHANNELS = {"consent_email": "Email", "consent_phone": "Phone", "consent_sms": "SMS", "consent_post": "Post"}
TELEPHONES = {"phone_mobile": "Mobile", "phone_home": "Home", "phone_work": "Work"}


def customer_export_name(layout: str, kind: str, at: datetime) -> str:
    """The file name the layout's profile takes as a `kind` (full | delta) export made at `at`."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown customer layout {layout!r}; one of {', '.join(LAYOUTS)}")
    if kind not in ("full", "delta"):
        raise ValueError(f"unknown export kind {kind!r}; full or delta")
    suffix = "csv" if layout == "navigator_customers_csv" else "xml"
    return f"customers_{kind}_{at:%Y%m%d_%H%M%S}.{suffix}"


def render_customer_export(frame: pd.DataFrame, layout: str) -> bytes:
    """The customers of `frame` (canonical: CUSTOMER_COLUMNS) as an export in `layout`; read back through the layout's
    profile and customers.validate, it gives the same canonical values."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown customer layout {layout!r}; one of {', '.join(LAYOUTS)}")
    customers = coerce_to_schema(frame)[CUSTOMER_COLUMNS]
    records = [{name: _text(name, value) for name, value in row.items()} for row in customers.to_dict("records")]
    return _navigator(records) if layout == "navigator_customers_csv" else _star5(records)


def _text(name: str, value) -> str:
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and value != value):
        return ""
    if name in TIME_COLUMNS:
        return pd.Timestamp(value).tz_convert("UTC").isoformat()
    if isinstance(value, bool):
        return "Y" if value else "N"
    return str(value)


def _navigator(records: list[dict]) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out, delimiter=",", quotechar='"', quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow(list(NAVIGATOR_COLUMNS))
    for record in records:
        row = []
        for field in NAVIGATOR_COLUMNS.values():
            value = record[field]
            row.append(value.replace(LIST_SEPARATOR, ";") if field == "owned_vehicles" else value)
        writer.writerow(row)
    return out.getvalue().encode("utf-8-sig")


def _star5(records: list[dict]) -> bytes:
    s = f"{{{STAR_NAMESPACE}}}"
    root = etree.Element(f"{s}ShowCustomerInformation", nsmap={"s": STAR_NAMESPACE})
    area = etree.SubElement(root, f"{s}CustomerInformationDataArea")

    def child(parent, tag: str, text: str, **attributes):
        element = etree.SubElement(parent, f"{s}{tag}", **attributes)
        element.text = text
        return element

    for record in records:
        attributes = {"CustomerID": record["customer_number"]}
        if record["updated_at"]:
            attributes["LastModifiedDateTime"] = record["updated_at"]
        customer = etree.SubElement(area, f"{s}Customer", **attributes)
        person = etree.SubElement(customer, f"{s}PersonName")
        for field, tag in (("title", "SalutationText"), ("first_name", "GivenName"), ("last_name", "FamilyName")):
            if record[field]:
                child(person, tag, record[field])
        if record["company_name"]:
            child(customer, "CompanyName", record["company_name"])
        if record["email"]:
            child(customer, "EmailAddress", record["email"])
        for field, kind in TELEPHONES.items():
            if record[field]:
                child(customer, "Telephone", record[field], Type=kind)
        address = etree.SubElement(customer, f"{s}PostalAddress")
        for field, tag in (("address_line1", "LineOne"), ("address_line2", "LineTwo"), ("town", "CityName"), ("county", "CountyName"), ("postcode", "Postcode")):
            if record[field]:
                child(address, tag, record[field])
        if record["owned_vehicles"]:
            vehicles = etree.SubElement(customer, f"{s}OwnedVehicles")
            for item in record["owned_vehicles"].split(LIST_SEPARATOR):
                child(vehicles, "VehicleID", item)
        for field, channel in CHANNELS.items():
            if record[field]:
                etree.SubElement(customer, f"{s}MarketingConsent", Channel=channel, Status="Given" if record[field] == "Y" else "Declined")
        if record["consent_wording"] or record["consent_updated_at"]:
            statement = child(customer, "ConsentStatement", record["consent_wording"] or None)
            if record["consent_updated_at"]:
                statement.set("DateTime", record["consent_updated_at"])
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
