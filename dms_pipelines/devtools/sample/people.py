"""Synthetic people with a planted truth: one dealer's DMS customers and leads, the same person under typos, changed e-mails, moves and marriages, households sharing a phone."""

import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pandas as pd

from dms_pipelines.leads.records import FIELD_NAMES

# The most common surnames of England and Wales in rank order; rarer ones are composed below so the tail is long.
COMMON_SURNAMES = (
    "Smith Jones Williams Taylor Brown Davies Evans Wilson Thomas Johnson Roberts Robinson Thompson Wright Walker White Edwards Hughes Green Hall "
    "Lewis Harris Clarke Patel Jackson Wood Turner Martin Cooper Hill Ward Morris Moore Clark Lee King Baker Harrison Morgan Allen James Scott "
    "Phillips Watson Davis Parker Price Bennett Young Griffiths Mitchell Kelly Cook Carter Richardson Bailey Collins Bell Shaw Murphy Miller Cox "
    "Richards Khan Marshall Anderson Simpson Ellis Adams Singh Begum Wilkinson Foster Chapman Powell Webb Rogers Gray Mason Ali Hunt Hussain "
    "Campbell Matthews Owen Palmer Holmes Mills Barnes Knight Lloyd Butler Russell Barker Fisher Stevens Jenkins Murray Dixon Harvey Graham"
).split()
SURNAME_STARTS = "Ash Black Brad Brook Cald Craw Dun Fair Golds Hart Hol Kirk Lang Marsh North Pen Ram Ross Shep Stan Thorn Wain Whit Wood Yar Ack Bram Cott".split()
SURNAME_ENDS = "worth ley ton field ford by wick ham stead combe well bury dale thorpe hurst croft".split()
FEMALE_NAMES = (
    "Olivia Amelia Isla Ava Emily Sophia Grace Mia Poppy Ella Lily Evie Isabella Sophie Ivy Freya Harper Willow Charlotte Jessica Rosie Daisy "
    "Alice Florence Phoebe Ruby Sienna Matilda Evelyn Chloe Elsie Lucy Emma Sarah Laura Rebecca Hannah Rachel Claire Helen Karen Susan Julie "
    "Joanne Nicola Michelle Amanda Lisa Kelly Gemma Natalie Victoria Katie Zara Aisha Fatima Priya Megan Bethany Abigail Holly Leah Paige"
).split()
MALE_NAMES = (
    "Oliver George Harry Noah Jack Leo Arthur Muhammad Oscar Charlie Jacob Thomas Henry William Freddie Alfie Theo Archie Joshua James Ethan "
    "Isaac Alexander Joseph Edward Samuel Max Daniel Lucas Logan Mason David Paul Mark Andrew Richard Stephen Michael Peter John Robert Gary "
    "Simon Darren Jason Craig Lee Neil Ian Martin Christopher Matthew Adam Ryan Luke Ben Callum Liam Kieran Imran Ravi Connor Nathan"
).split()
# Postcode areas with a post town and a dialling code of theirs (numbers as phonenumbers calls valid).
AREAS = (
    ("LS", "LEEDS", "113"),
    ("BD", "BRADFORD", "1274"),
    ("HX", "HALIFAX", "1422"),
    ("HD", "HUDDERSFIELD", "1484"),
    ("WF", "WAKEFIELD", "1924"),
    ("YO", "YORK", "1904"),
    ("HG", "HARROGATE", "1423"),
    ("S", "SHEFFIELD", "114"),
    ("DN", "DONCASTER", "1302"),
    ("M", "MANCHESTER", "161"),
)
UNIT_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"
MOBILE_PREFIXES = ("71", "73", "74", "75", "78")
EMAIL_DOMAINS = ("gmail.com", "hotmail.co.uk", "yahoo.co.uk", "outlook.com", "btinternet.com", "sky.com", "icloud.com", "live.co.uk")
STREETS = "High Street|Church Lane|Station Road|Park Avenue|Victoria Road|Mill Lane|The Green|Manor Road|Oak Drive|Queens Road".split("|")
CONSENT_WORDING = "I agree to hear about offers by e-mail, phone, SMS and post."
CUSTOMER_COLUMNS = [
    "dealer_id",
    "customer_number",
    "title",
    "first_name",
    "last_name",
    "company_name",
    "email",
    "phone_mobile",
    "phone_home",
    "phone_work",
    "address_line1",
    "address_line2",
    "town",
    "county",
    "postcode",
    "owned_vehicles",
    "consent_email",
    "consent_phone",
    "consent_sms",
    "consent_post",
    "consent_wording",
    "consent_updated_at",
    "updated_at",
]
LEAD_VARIANTS = ("same", "name_typo", "email_typo", "changed_email", "moved", "married", "no_email", "no_phone")
LEAD_VARIANT_WEIGHTS = (40, 10, 8, 10, 10, 6, 8, 8)
DUPLICATE_VARIANTS = ("name_typo", "changed_email", "moved", "married")
EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)


@dataclass
class PlantedPeople:
    """One dealer's generated people: DMS customer rows, canonical leads (each with a lead_key) and who is who."""

    customers: pd.DataFrame
    leads: list[dict]
    truth: pd.DataFrame  # record_kind ('customer'|'lead'), record_key, person_id
    planted: dict[str, int]


def _zipf_weights(count: int, exponent: float) -> list[float]:
    return [1 / (rank**exponent) for rank in range(1, count + 1)]


class _Population:
    def __init__(self, rng: random.Random):
        self.rng = rng
        composed = sorted({start + middle + end for start in SURNAME_STARTS for middle in ("", "e", "in", "er") for end in SURNAME_ENDS})
        rng.shuffle(composed)
        self.surnames = list(COMMON_SURNAMES) + composed
        self.surname_weights = _zipf_weights(len(self.surnames), 0.6)
        self.first_names = FEMALE_NAMES + MALE_NAMES
        self.first_name_weights = _zipf_weights(len(FEMALE_NAMES), 0.7) + _zipf_weights(len(MALE_NAMES), 0.7)
        self.used_phones: set[str] = set()
        self.used_emails: set[str] = set()

    def surname(self) -> str:
        return self.rng.choices(self.surnames, self.surname_weights)[0]

    def first_name(self, avoid: set[str] = frozenset()) -> str:
        while True:
            name = self.rng.choices(self.first_names, self.first_name_weights)[0]
            if name not in avoid:
                return name

    def address(self) -> dict:
        area, town, _ = self.rng.choice(AREAS)
        district = self.rng.randint(1, 20)
        unit = f"{self.rng.randint(0, 9)}{self.rng.choice(UNIT_LETTERS)}{self.rng.choice(UNIT_LETTERS)}"
        return {"postcode": f"{area}{district} {unit}", "town": town, "address_line1": f"{self.rng.randint(1, 200)} {self.rng.choice(STREETS)}", "area": area}

    def _unique_phone(self, make) -> str:
        while True:
            number = make()
            if number not in self.used_phones:
                self.used_phones.add(number)
                return number

    def mobile(self) -> str:
        return self._unique_phone(lambda: "+44" + self.rng.choice(MOBILE_PREFIXES) + "".join(self.rng.choice("0123456789") for _ in range(8)))

    def landline(self, area: str) -> str:
        code = next(dialling for name, _, dialling in AREAS if name == area)
        # the subscriber part starts 2-3 (never 496: the Ofcom drama range), as real geographic numbers of these codes do
        return self._unique_phone(lambda: "+44" + code + self.rng.choice("23") + "".join(self.rng.choice("0123456789") for _ in range(9 - len(code))))

    def email(self, first: str, last: str) -> str:
        while True:
            shape = self.rng.randrange(4)
            number = str(self.rng.randint(1, 99))
            local = (f"{first}.{last}", f"{first}{last}{number}", f"{first[0]}{last}{number}", f"{last}.{first}{number}")[shape].lower()
            email = f"{local}@{self.rng.choice(EMAIL_DOMAINS)}"
            if email not in self.used_emails:
                self.used_emails.add(email)
                return email

    def typo(self, word: str) -> str:
        """One keyboard slip: two neighbouring letters swapped, one dropped, one doubled or one replaced (never the first letter)."""
        if len(word) < 4:
            return word + word[-1]
        position = self.rng.randint(1, len(word) - 2)
        kind = self.rng.randrange(4)
        if kind == 0:
            return word[:position] + word[position + 1] + word[position] + word[position + 2 :]
        if kind == 1:
            return word[:position] + word[position + 1 :]
        if kind == 2:
            return word[:position] + word[position] + word[position:]
        replacement = self.rng.choice([letter for letter in "aeioulnrst" if letter != word[position].lower()])
        return word[:position] + replacement + word[position + 1 :]

    def email_typo(self, email: str) -> str:
        local, _, domain = email.partition("@")
        return f"{self.typo(local)}@{domain}"


def _person(population: _Population, person_id: str, last: str, address: dict, home_phone: str | None, avoid: set[str]) -> dict:
    first = population.first_name(avoid)
    return {
        "person_id": person_id,
        "first_name": first,
        "last_name": last,
        "email": population.email(first, last) if population.rng.random() < 0.9 else None,
        "mobile": population.mobile() if population.rng.random() < 0.9 else None,
        "home": home_phone,
        **address,
    }


def _customer_row(rng: random.Random, dealer_id: str, number: int, person: dict) -> dict:
    updated = EPOCH + timedelta(minutes=rng.randint(0, 500_000))
    consent = rng.random() < 0.6
    return {
        "dealer_id": dealer_id,
        "customer_number": f"C{number:07d}",
        "title": rng.choice(("Mr", "Mrs", "Ms", "Miss", "Dr", None)),
        "first_name": person["first_name"],
        "last_name": person["last_name"],
        "company_name": None,
        "email": person["email"],
        "phone_mobile": person["mobile"],
        "phone_home": person["home"],
        "phone_work": None,
        "address_line1": person["address_line1"],
        "address_line2": None,
        "town": person["town"],
        "county": None,
        "postcode": person["postcode"],
        "owned_vehicles": None,
        "consent_email": consent,
        "consent_phone": consent,
        "consent_sms": None,
        "consent_post": rng.random() < 0.3,
        "consent_wording": CONSENT_WORDING if consent else None,
        "consent_updated_at": updated if consent else None,
        "updated_at": updated,
    }


def _variant(population: _Population, person: dict, variant: str) -> dict:
    """How a person appears again: the same, or under one planted change."""
    rng = population.rng
    seen = dict(person)
    if variant == "name_typo":
        key = rng.choice(("first_name", "last_name"))
        seen[key] = population.typo(person[key])
    elif variant == "email_typo" and person["email"]:
        seen["email"] = population.email_typo(person["email"])
    elif variant == "changed_email":
        seen["email"] = population.email(person["first_name"], person["last_name"] + str(rng.randint(100, 999)))
    elif variant == "moved":
        seen.update(population.address())
        if person["email"] and person["mobile"] and rng.random() < 0.5:
            seen["mobile"] = population.mobile()
        seen["home"] = None
    elif variant == "married":
        seen["last_name"] = population.surname()
        if person["email"] and person["mobile"] and rng.random() < 0.5:
            seen["email"] = population.email(person["first_name"], seen["last_name"])
    elif variant == "no_email" and person["mobile"]:
        seen["email"] = None
    elif variant == "no_phone" and person["email"]:
        seen["mobile"] = seen["home"] = None
    return seen


def _lead(rng: random.Random, dealer_id: str, number: int, person: dict) -> dict:
    lead = dict.fromkeys(FIELD_NAMES)
    given = EPOCH + timedelta(days=400, minutes=rng.randint(0, 100_000))
    lead.update(
        source=rng.choice(("autotrader", "meta", "google", "website", "adf")),
        source_lead_id=f"S{number:08d}",
        dealer_id=dealer_id,
        received_at=given,
        enquired_at=given,
        channel="website",
        lead_status="new",
        email=person["email"],
        phone=person["mobile"] or person["home"],
        postcode=person["postcode"] if rng.random() < 0.75 else None,
    )
    if lead["source"] == "meta":
        lead["full_name"] = f"{person['first_name']} {person['last_name']}"
    else:
        lead["first_name"], lead["last_name"] = person["first_name"], person["last_name"]
    lead["lead_key"] = f"L{number:07d}"
    return lead


def generate_people(
    dealer_id: str,
    customers: int,
    leads: int,
    seed: int,
    existing_share: float = 0.65,
    repeat_share: float = 0.12,
    household_phone_share: float = 0.03,
    namesake_share: float = 0.03,
    duplicate_customer_share: float = 0.02,
) -> PlantedPeople:
    """`customers` DMS customer rows of one dealer and `leads` leads, with the person each record is.

    Customers come in households (one address and surname, a shared home phone, different first names); a share of them
    has a second DMS record under a typo, a new e-mail, a new address or a married name. Of the leads, `existing_share` are
    existing customers (as they are, or under one planted change), `repeat_share` repeat an earlier new prospect's enquiry,
    `household_phone_share` are a customer's household member giving the household phone, `namesake_share` are a
    different person sharing a customer's first and last name and town, and the rest are new people."""
    rng = random.Random(seed)
    population = _Population(rng)
    people: list[dict] = []
    households: list[list[dict]] = []
    while len(people) < customers:
        address = population.address()
        last = population.surname()
        size = min(rng.choices((1, 2, 3, 4), (55, 30, 10, 5))[0], customers - len(people))
        home = population.landline(address["area"]) if size > 1 or rng.random() < 0.3 else None
        household: list[dict] = []
        for _ in range(size):
            member = _person(population, f"P{len(people):07d}", last, address, home, {m["first_name"] for m in household})
            household.append(member)
            people.append(member)
        households.append(household)
    duplicates = round(customers * duplicate_customer_share)
    rows, truth = [], []
    for number, person in enumerate(people):
        rows.append(_customer_row(rng, dealer_id, number, person))
        truth.append(("customer", rows[-1]["customer_number"], person["person_id"]))
    for person in rng.sample(people, min(duplicates, len(people))):
        number = len(rows)
        rows.append(_customer_row(rng, dealer_id, number, _variant(population, person, rng.choice(DUPLICATE_VARIANTS))))
        truth.append(("customer", rows[-1]["customer_number"], person["person_id"]))
    order = list(range(len(rows)))
    rng.shuffle(order)
    customer_frame = pd.DataFrame([rows[i] for i in order], columns=CUSTOMER_COLUMNS)

    planted = dict.fromkeys(("existing", "repeat", "household_phone", "namesake", "new", *LEAD_VARIANTS), 0)
    prospects: list[dict] = []
    lead_list: list[dict] = []
    for number in range(leads):
        draw = rng.random()
        if people and draw < existing_share:
            variant = rng.choices(LEAD_VARIANTS, LEAD_VARIANT_WEIGHTS)[0]
            person = _variant(population, rng.choice(people), variant)
            planted["existing"] += 1
            planted[variant] += 1
        elif prospects and draw < existing_share + repeat_share:
            person = _variant(population, rng.choice(prospects), rng.choice(("same", "same", "name_typo", "no_phone", "no_email")))
            planted["repeat"] += 1
        elif households and draw < existing_share + repeat_share + household_phone_share:
            household = rng.choice([h for h in rng.sample(households, min(50, len(households))) if h[0]["home"]] or households[:1])
            person = _person(population, f"Q{number:07d}", household[0]["last_name"], household[0], household[0]["home"], {m["first_name"] for m in household})
            person["mobile"] = None
            prospects.append(person)
            planted["household_phone"] += 1
        elif people and draw < existing_share + repeat_share + household_phone_share + namesake_share:
            namesake = rng.choice(people)
            address = population.address()
            while address["town"] != namesake["town"]:
                address = population.address()
            person = {**_person(population, f"Q{number:07d}", namesake["last_name"], address, None, set()), "first_name": namesake["first_name"]}
            person["email"] = population.email(namesake["first_name"], namesake["last_name"])
            prospects.append(person)
            planted["namesake"] += 1
        else:
            address = population.address()
            person = _person(population, f"Q{number:07d}", population.surname(), address, None, set())
            prospects.append(person)
            planted["new"] += 1
        lead = _lead(rng, dealer_id, number, person)
        lead_list.append(lead)
        truth.append(("lead", lead["lead_key"], person["person_id"]))
    truth_frame = pd.DataFrame(truth, columns=["record_kind", "record_key", "person_id"])
    return PlantedPeople(customer_frame, lead_list, truth_frame, planted)
