"""The demo's enquiries: the webhook receiver on a free port, sample leads posted to it and dropped in the lead inboxes, an Auto Trader deal notified, then the lead run."""

import json
import os
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from dms_pipelines.config import LocalDestination, Settings
from dms_pipelines.paths import DataPaths

DEMO_SECRETS = {"autotrader_secret_env": "demo-autotrader-secret", "google_key_env": "demo-google-key", "website_key_env": "demo-website-key"}


@dataclass
class LeadDemo:
    posted: dict[str, int] = field(default_factory=dict)  # channel -> HTTP statuses 2xx
    refused_forgery: bool = False
    adf_files: list[Path] = field(default_factory=list)
    outcomes: dict[str, bool] = field(default_factory=dict)


def demo_secrets(settings: Settings) -> dict[str, str]:
    """The receiver's secrets for the demo: the configured variables, set to demo values where the environment has none."""
    receiver = settings.leads.receiver
    secrets = {}
    for key, value in DEMO_SECRETS.items():
        variable = getattr(receiver, key)
        if variable:
            secrets[key] = os.environ.setdefault(variable, value)
    return secrets


def _post(url: str, payload: dict, headers: dict | None = None) -> int:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json", **(headers or {})}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def write_demo_customers(dealer, paths: DataPaths, sample) -> int:
    """A DMS customer export for the dealer: generated customers, and the people of its first two website enquiries (one
    under the same e-mail, one under an older e-mail but the same phone), so that the demo shows returning customers."""
    from datetime import datetime, timezone

    import pandas as pd

    from dms_pipelines.customers.schema import CUSTOMER_COLUMNS
    from dms_pipelines.devtools.sample.customer_files import LAYOUTS, customer_export_name, render_customer_export
    from dms_pipelines.devtools.sample.people import generate_people

    layout = dealer.customers.profile if dealer.customers.profile in LAYOUTS else "navigator_customers_csv"
    frame = generate_people(dealer.id, customers=300, leads=0, seed=7).customers
    known = []
    for number, payload in enumerate(sample.website[:2]):
        row = dict.fromkeys(CUSTOMER_COLUMNS)
        email = payload.get("email") if number == 0 else f"old.{payload.get('email')}"
        row.update(
            dealer_id=dealer.id,
            customer_number=f"DEMO{number + 1:04d}",
            first_name=payload.get("first_name"),
            last_name=payload.get("last_name"),
            email=email,
            phone_mobile=payload.get("phone"),
            postcode=payload.get("postcode"),
            updated_at=datetime(2026, 1, 5, tzinfo=timezone.utc),
        )
        known.append(row)
    frame = pd.concat([frame[[c for c in CUSTOMER_COLUMNS if c in frame]], pd.DataFrame(known)], ignore_index=True)
    folder = paths.customer_inbox / dealer.id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / customer_export_name(layout, "full", datetime.now(timezone.utc))).write_bytes(render_customer_export(frame, layout))
    return len(frame)


def run_lead_demo(settings: Settings, paths: DataPaths, simulator, run_leads, sold_stock_id: str | None = None, echo=print) -> LeadDemo:
    """Leads on every channel for each dealer with a CRM, through the real receiver and inboxes, then the lead run."""
    from dms_pipelines.devtools.sample.leads import generate_leads
    from dms_pipelines.leads.receiver import WEBSITE_KEY_HEADER, ReceiverServer
    from dms_pipelines.stock.store import read_stock

    secrets = demo_secrets(settings)
    demo = LeadDemo()
    dealers = [dealer for dealer in settings.dealers if dealer.crm is not None]
    with ReceiverServer(settings, paths, port=0) as receiver:
        echo(f"   webhook receiver of this demo on {receiver.url}")
        for dealer in dealers:
            sample = generate_leads(read_stock(paths.state, dealer.id), dealer.id, paths.lead_inbox / dealer.id, sold_stock_id=sold_stock_id)
            if dealer.customers is not None:
                count = write_demo_customers(dealer, paths, sample)
                echo(f"   {dealer.id}: a DMS customer export of {count} customers, two of them enquiring on the website today")
            for payload in sample.website:
                status = _post(f"{receiver.url}/webhooks/website/{dealer.id}", payload, {WEBSITE_KEY_HEADER: secrets.get("website_key_env", "")})
                demo.posted["website"] = demo.posted.get("website", 0) + (200 <= status < 300)
            for payload in sample.google:
                status = _post(f"{receiver.url}/webhooks/google/{dealer.id}", {**payload, "google_key": secrets.get("google_key_env", "")})
                demo.posted["google"] = demo.posted.get("google", 0) + (200 <= status < 300)
            account = dealer.marketplaces.get("autotrader")
            if simulator is not None and account is not None and account.setting("advertiser_id"):
                for deal in sample.deals:
                    deal_id = simulator.add_deal(account.setting("advertiser_id"), deal["deal"], deal["components"])
                    body = simulator.notification(deal_id, "DEAL_CREATED")
                    status = simulator.notify(receiver.url, secrets.get("autotrader_secret_env", ""), deal_id, "DEAL_CREATED", body=body)
                    demo.posted["autotrader"] = demo.posted.get("autotrader", 0) + (200 <= status < 300)
                    simulator.notify(receiver.url, secrets.get("autotrader_secret_env", ""), deal_id, "DEAL_CREATED", body=body)  # Deal Sync resends: still one lead
                    forged = simulator.notify(receiver.url, "not-the-secret", deal_id, "DEAL_UPDATED")
                    demo.refused_forgery = forged == 403
        echo(
            f"   posted to the receiver: {', '.join(f'{channel} {count}' for channel, count in sorted(demo.posted.items()))}; a forged Auto Trader notification got {'403' if demo.refused_forgery else 'NOT 403'}"
        )
        echo("   lead inboxes: a Meta lead CSV export (a repeated lead, one without a usable contact) and an ADF e-mail sent twice")
        demo.outcomes = run_leads([dealer.id for dealer in dealers], echo=echo)
    for dealer in dealers:
        if isinstance(dealer.crm.drop, LocalDestination):
            demo.adf_files += sorted(paths.resolve(dealer.crm.drop.path).glob("*.xml"))
    return demo
