"""UK registration plates for sample vehicles: current style, with the age identifier of the first registration date."""

import numpy as np
import pandas as pd

PLATE_LETTERS = np.array(list("ABCDEFGHJKLMNOPRSTUVWXY"))  # no I, Q or Z in the random letters
MEMORY_TAGS = np.array(list("ABCDEFGHJKLMNOPRSTUVWXY"))


def age_identifier(dates: pd.Series) -> pd.Series:
    """'YY' for a March-August registration, YY+50 for September-February (2021-10-05 -> '71', 2022-02-10 -> '71')."""
    year = dates.dt.year.to_numpy()
    month = dates.dt.month.to_numpy()
    value = np.where((month >= 3) & (month <= 8), year % 100, np.where(month >= 9, year % 100 + 50, (year - 1) % 100 + 50))
    return pd.Series(np.char.zfill(value.astype(str), 2), index=dates.index)


def plates_for(dates: pd.Series, rng: np.random.Generator, region: str = "Y") -> pd.Series:
    """A current-style plate per first registration date, e.g. YD71 KPR (stored without the space)."""
    n = len(dates)
    memory = MEMORY_TAGS[rng.integers(0, len(MEMORY_TAGS), n)]
    tail = PLATE_LETTERS[rng.integers(0, len(PLATE_LETTERS), (n, 3))]
    tail_text = np.ascontiguousarray(tail).view("<U3").ravel() if n else np.array([], dtype="<U3")
    ages = age_identifier(dates).to_numpy().astype("<U2")
    plates = np.char.add(np.char.add(np.char.add(region, memory.astype("<U1")), ages), tail_text)
    return pd.Series(plates, index=dates.index, dtype="string")
