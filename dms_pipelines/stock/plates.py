"""Registration marks by country: the UK's five plate styles and age identifier, and the Irish plate with its year and county."""

import pandas as pd

CURRENT = r"[A-Z]{2}[0-9]{2}[A-Z]{3}"  # AB12CDE (since September 2001)
PREFIX = r"[A-HJ-NPR-Y][0-9]{1,3}[A-Z]{3}"  # A123BCD (1983-2001)
SUFFIX = r"[A-Z]{3}[0-9]{1,3}[A-HJ-NPR-Y]"  # ABC123D (1963-1983)
DATELESS = r"(?:[A-Z]{1,3}[0-9]{1,4}|[0-9]{1,4}[A-Z]{1,3})"  # ABC 123, 1234 AB
Q_PLATE = r"Q[0-9]{1,3}[A-Z]{3}|Q[A-Z]{3}[0-9]{1,3}"  # vehicles of unknown age
PLATE_STYLES = {"current": CURRENT, "prefix": PREFIX, "suffix": SUFFIX, "dateless": DATELESS, "q": Q_PLATE}

# Irish plates (since 1987): year, county, number, e.g. 07-D-123456, 12-KY-1234, 191-D-12345; the reader strips spaces, the
# hyphens may be there or not. 1987-2012: a two-digit year; since 2013 three digits: the year and the half (1: January to
# June, 2: July to December). The county codes changed in 2014 (TN and TS became T, WD became W; LK, merged into L, is taken
# in any year: a false alarm would take a real car off sale).
IRISH = r"^(?P<year>[0-9]{2,3})-?(?P<county>[A-Z]{1,2})-?(?P<number>[0-9]{1,6})$"
IRISH_COUNTIES = ("C", "CE", "CN", "CW", "D", "DL", "G", "KE", "KK", "KY", "L", "LD", "LH", "LK", "LM", "LS", "MH", "MN", "MO", "OY", "RN", "SO", "W", "WH", "WX", "WW")
COUNTIES_BEFORE_2014 = IRISH_COUNTIES + ("TN", "TS", "WD")
COUNTIES_SINCE_2014 = IRISH_COUNTIES + ("T",)
IRISH_STYLE = "irish"
PLATE_DESCRIPTIONS = {"GB": "a UK registration (current, prefix, suffix, dateless or Q style)", "IE": "an Irish registration (year, county, number: 191-D-12345, 12-KY-1234)"}


def plate_style(registration: pd.Series, countries: tuple[str, ...] = ("GB",)) -> pd.Series:
    """The style each plate matches ('current', 'prefix', ... for the UK, 'irish'), or <NA> for none of `countries`' plates."""
    style = pd.Series(pd.NA, index=registration.index, dtype="string")
    if "IE" in countries:
        style = style.mask(irish_plates(registration)["valid"].to_numpy(dtype=bool), IRISH_STYLE)
    if "GB" in countries:
        for name, pattern in reversed(PLATE_STYLES.items()):  # the most specific style wins
            style = style.mask(registration.str.fullmatch(pattern).fillna(False).astype(bool), name)
    return style


def plate_rule_text(countries: tuple[str, ...]) -> str:
    """What a plate must be for `countries`, for the plate_format message."""
    return " or ".join(PLATE_DESCRIPTIONS[country] for country in countries)


def irish_plates(registration: pd.Series) -> pd.DataFrame:
    """Per plate read as Irish: `valid` (its year and county exist), `year` (1987-2099), `half` (1, 2; <NA> before 2013), `start`
    (the first day a plate of its year and half was issued); missing where the plate is not Irish."""
    parts = registration.astype("string").str.extract(IRISH)
    digits = parts["year"]
    two = (digits.str.len() == 2).fillna(False).astype(bool)
    value = pd.to_numeric(digits.str.slice(0, 2), errors="coerce").astype("Int64")
    half = pd.to_numeric(digits.str.slice(2, 3), errors="coerce").astype("Int64").where(~two)
    year = (value + 2000).mask(two & (value >= 87), value + 1900)
    valid_year = (two & ((value >= 87) | (value <= 12))) | (~two & (value >= 13) & half.isin([1, 2]))
    county = parts["county"]
    valid_county = county.isin(COUNTIES_BEFORE_2014).where(year < 2014, county.isin(COUNTIES_SINCE_2014))
    valid = (valid_year & valid_county).fillna(False).astype(bool)
    year = year.where(valid)
    month = pd.Series(1, index=registration.index).where(half.fillna(1) != 2, 7)
    dates = pd.DataFrame({"year": year, "month": month, "day": 1}).dropna()
    start = pd.to_datetime(dates.astype("int64"), errors="coerce").reindex(registration.index) if len(dates) else pd.Series(pd.NaT, index=registration.index, dtype="datetime64[ns]")
    return pd.DataFrame({"valid": valid, "year": year, "half": half.where(valid), "start": start}, index=registration.index)


def age_identifier_start(registration: pd.Series) -> pd.Series:
    """For current-style plates, the first day its age identifier could be issued (e.g. 71 -> 2021-09-01)."""
    digits = pd.to_numeric(registration.str.slice(2, 4), errors="coerce")
    september = digits >= 50
    year = 2000 + digits.where(~september, digits - 50)
    month = pd.Series(3, index=registration.index).where(~september, 9)
    # 00 was never issued in March 2000 (the 51 plate came first); treat it as March 2050, i.e. not yet issued.
    year = year.mask(digits == 0, 2050)
    frame = pd.DataFrame({"year": year, "month": month, "day": 1})
    return pd.to_datetime(frame.dropna(), errors="coerce").reindex(registration.index)


def age_identifier_for(dates: pd.Series) -> pd.Series:
    """The two-digit age identifier a car first registered on each date carries (2021-10-05 -> '71')."""
    year = dates.dt.year
    month = dates.dt.month
    value = (year % 100).where(month.between(3, 8), ((year - 1) % 100 + 50).where(month < 3, year % 100 + 50))
    return value.astype("Int64").astype("string").str.zfill(2)
