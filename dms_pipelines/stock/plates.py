"""UK registration marks: the five plate styles and the current style's age identifier."""

import pandas as pd

CURRENT = r"[A-Z]{2}[0-9]{2}[A-Z]{3}"  # AB12CDE (since September 2001)
PREFIX = r"[A-HJ-NPR-Y][0-9]{1,3}[A-Z]{3}"  # A123BCD (1983-2001)
SUFFIX = r"[A-Z]{3}[0-9]{1,3}[A-HJ-NPR-Y]"  # ABC123D (1963-1983)
DATELESS = r"(?:[A-Z]{1,3}[0-9]{1,4}|[0-9]{1,4}[A-Z]{1,3})"  # ABC 123, 1234 AB
Q_PLATE = r"Q[0-9]{1,3}[A-Z]{3}|Q[A-Z]{3}[0-9]{1,3}"  # vehicles of unknown age
PLATE_STYLES = {"current": CURRENT, "prefix": PREFIX, "suffix": SUFFIX, "dateless": DATELESS, "q": Q_PLATE}


def plate_style(registration: pd.Series) -> pd.Series:
    """The style each plate matches ('current', 'prefix', ...), or <NA> for none."""
    style = pd.Series(pd.NA, index=registration.index, dtype="string")
    for name, pattern in reversed(PLATE_STYLES.items()):  # the most specific style wins
        style = style.mask(registration.str.fullmatch(pattern).fillna(False).astype(bool), name)
    return style


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
