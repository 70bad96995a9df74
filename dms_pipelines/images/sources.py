"""Read an imaging service's feed (CitNOW, AutosOnShow and the like) through its mapping profile: canonical image rows, and every bad row quarantined with file, row and field."""

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from dms_pipelines.formats.profile import MappingProfile, ProfileError, find_profile, load_profile
from dms_pipelines.formats.reader import read_export
from dms_pipelines.images.matching import list_items
from dms_pipelines.kernels.arrow_text import arrow_strings
from dms_pipelines.paths import BUILTIN_PROFILES
from dms_pipelines.stock.imaging_schema import IDENTIFIER_COLUMNS, IMAGE_COLUMNS, ISSUE_COLUMNS, URL_PATTERN, coerce_to_schema, empty_issues

VIN_PATTERN = r"^[A-HJ-NPR-Z0-9]{17}$"
IN_PROGRESS_PATTERNS = (".*", "*.tmp", "*.part", "*.filepart")  # names a transfer gives a file it is still writing
RULE_TEXT = {
    "missing_url": "missing; every row needs the image's URL (the row is quarantined)",
    "not_a_url": "not an absolute http(s) URL without spaces (the row is quarantined)",
    "no_vehicle": "none given (stock number, VIN or registration): the image cannot be matched to a vehicle (the row is quarantined)",
    "invalid_vin": "not 17 characters A-Z and 0-9 without I, O and Q; the VIN is dropped, the row goes on",
    "invalid_position": "below 1; the position is dropped, the file's order is used",
    "duplicate_image": "the same image of the same vehicle appears earlier in the file; this copy is not stored",
}


@dataclass
class ImagingFeed:
    """One imaging feed read: its accepted images (IMAGE_COLUMNS, one row per image, the file's order), every issue, and the quarantined rows with their reasons."""

    file_name: str
    profile_name: str
    frame: pd.DataFrame
    issues: pd.DataFrame  # ISSUE_COLUMNS; each message starts '<file>: row <n>: <field>: '
    quarantined: pd.DataFrame  # IMAGE_COLUMNS + reason: the rows refused (errors), one per image
    records_total: int  # records in the file that were read (skipped ones aside)
    images_read: int  # image rows after a list layout's cells are split (a record the engine cannot split into fields counts one): accepted + quarantined + duplicates
    skipped: dict[str, int] = field(default_factory=dict)  # reason of a profile's skip rule -> records (videos, spins)
    warnings: list[str] = field(default_factory=list)

    @property
    def duplicates(self) -> int:
        return int((self.issues["rule"] == "duplicate_image").sum())


def imaging_profile(profile_name_or_path: str | Path | MappingProfile, search_dirs: list[Path] | None = None) -> MappingProfile:
    """The imaging feed's profile: a profile, a YAML path, or a name looked up in `search_dirs` (the built-in profiles
    when none are given); ProfileError when it does not read images (record: images)."""
    if isinstance(profile_name_or_path, MappingProfile):
        profile = profile_name_or_path
    elif isinstance(profile_name_or_path, Path) or str(profile_name_or_path).endswith((".yaml", ".yml")):
        profile = load_profile(Path(profile_name_or_path))
    else:
        profile = find_profile(str(profile_name_or_path), search_dirs or [BUILTIN_PROFILES])
    if profile.record != "images":
        raise ProfileError(f"mapping profile '{profile.name}' reads {profile.record} records (record: {profile.record}); an imaging feed needs a profile with record: images")
    return profile


def read_imaging_feed(path: Path, profile_name_or_path: str | Path | MappingProfile, dealer_id: str, search_dirs: list[Path] | None = None) -> ImagingFeed:
    """The imaging feed at `path` read through its profile, row rules applied; raises MappingError when the file cannot be
    read at all (no header, required columns missing, undecodable) and ProfileError for a profile that does not read images.

    A list-typed image_url (one row per vehicle, its URLs joined) becomes one row per URL, its position its place in the
    list (after the row's own position, when the layout gives one). Errors quarantine the image row: no URL, a URL that is
    not absolute http(s), nothing naming the vehicle, or a value the engine could not read in a required field. Warnings
    drop the value and keep the row: an invalid VIN, a position below 1, a time or number that cannot be read; an image of
    the same vehicle seen again later in the file is not stored twice."""
    profile = imaging_profile(profile_name_or_path, search_dirs)
    result = read_export(path, profile, dealer_id)
    file_name = result.file_name
    rows = coerce_to_schema(result.rows).reset_index(drop=True)
    if profile.fields.get("image_url") is not None and profile.fields["image_url"].type == "list":
        rows = _exploded(rows)
    rules = _RowRules(rows, file_name)
    rules.carry(result.issues)
    rules.apply()
    return ImagingFeed(
        file_name=file_name,
        profile_name=profile.name,
        frame=rules.accepted(),
        issues=rules.issue_frame(),
        quarantined=rules.quarantined(),
        records_total=result.records_total,
        images_read=len(rows) + len(rules.unread),
        skipped=dict(result.skipped),
        warnings=list(result.warnings),
    )


def latest_imaging_feed(folder: Path, patterns: list[str] | None = None) -> Path | None:
    """The newest feed file in `folder` (None when there is none): of the regular files whose names match `patterns` (all
    when None; a profile's files.full) and are not still being written (.name, *.tmp, *.part, *.filepart), the one
    modified last; equal modification times go to the greater name (services put a timestamp in the name)."""
    if not folder.is_dir():
        return None
    candidates = []
    for entry in folder.iterdir():
        name = entry.name
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in IN_PROGRESS_PATTERNS):
            continue
        if patterns is not None and not any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
            continue
        if entry.is_file() and not entry.is_symlink():
            candidates.append((entry.stat().st_mtime_ns, name, entry))
    return max(candidates)[2] if candidates else None


def _exploded(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per URL of each row's '|'-joined image_url (a row without any keeps one row, its URL missing)."""
    parent, urls, place = list_items(rows["image_url"])
    empty = np.setdiff1d(np.arange(len(rows)), parent)
    order = np.argsort(np.concatenate([parent, empty]), kind="stable")
    take = np.concatenate([parent, empty])[order]
    exploded = rows.iloc[take].reset_index(drop=True)
    url_values = pa.concat_arrays([urls.cast(pa.large_string()), pa.nulls(len(empty), pa.large_string())]).take(pa.array(order))
    exploded["image_url"] = pd.array(url_values.cast(pa.string()), dtype="string")
    places = np.concatenate([place, np.ones(len(empty), dtype=np.int64)])[order]
    base = exploded["position"].fillna(1).astype("int64").to_numpy()
    exploded["position"] = pd.array(base + places - 1, dtype="Int64")
    return exploded


class _RowRules:
    """The row rules over one feed's rows: issues as they are found (each with the row's place), the rows refused, the values dropped."""

    def __init__(self, rows: pd.DataFrame, file_name: str):
        self.rows = rows
        self.file_name = file_name
        self.bad = np.zeros(len(rows), dtype=bool)
        self.later = np.zeros(len(rows), dtype=bool)
        self.found: list[pd.DataFrame] = []
        self.carried_errors = pd.Series(dtype="string")  # source row -> the engine's error messages for it
        self.unread = pd.DataFrame({"source_row": pd.Series(dtype="Int64"), "stock_id": pd.Series(dtype="string")})

    def report(self, mask: np.ndarray, field: str, rule: str, severity: str, value: pd.Series | None = None) -> None:
        at = np.flatnonzero(mask)
        if not len(at):
            return
        rows = self.rows.iloc[at]
        prefix = self.file_name + ": row " + rows["source_row"].astype("string").fillna("?") + f": {field}: "
        message = prefix + RULE_TEXT[rule]
        self.found.append(
            pd.DataFrame(
                {
                    "_at": at,
                    "_carried": False,
                    "source_row": rows["source_row"].to_numpy(),
                    "stock_id": rows["stock_id"].to_numpy(),
                    "field": field,
                    "rule": rule,
                    "value": value.iloc[at].str.slice(0, 200).to_numpy() if value is not None else pd.NA,
                    "severity": severity,
                    "message": message.to_numpy(),
                }
            )
        )
        if severity == "error":
            self.bad[at] = True

    def carry(self, read_issues: pd.DataFrame) -> None:
        """The engine's issues, prefixed with file and row: an error refuses every image row of its record."""
        if read_issues is None or not len(read_issues):
            return
        issues = read_issues.reset_index(drop=True)
        message = issues["message"].astype("string")
        prefixed = message.str.startswith(f"{self.file_name}:").fillna(False)
        message = message.where(prefixed, self.file_name + ": row " + issues["source_row"].astype("string").fillna("?") + ": " + message)
        source_rows = self.rows["source_row"].astype("Int64")
        first_at = pd.Series(np.arange(len(self.rows)), index=source_rows.to_numpy()).groupby(level=0).first()
        errors = (issues["severity"] == "error").to_numpy()
        self.found.append(
            pd.DataFrame(
                {
                    "_at": issues["source_row"].map(first_at).fillna(-1).astype("int64").to_numpy(),
                    "_carried": True,
                    "source_row": issues["source_row"].astype("Int64").to_numpy(),
                    "stock_id": issues["stock_id"].to_numpy(),
                    "field": issues["field"].astype("string").fillna("(row)").to_numpy(),
                    "rule": issues["rule"].to_numpy(),
                    "value": issues["value"].to_numpy(),
                    "severity": issues["severity"].to_numpy(),
                    "message": message.to_numpy(),
                }
            )
        )
        refused = issues.loc[errors, "source_row"].dropna()
        self.bad |= source_rows.isin(refused.astype("int64").tolist()).fillna(False).to_numpy()
        self.carried_errors = pd.Series(message[errors].to_numpy(), index=issues.loc[errors, "source_row"].to_numpy()).groupby(level=0).agg("; ".join)
        # records the engine could not split into fields (field_count): no image row exists for them, they are refused whole
        unread = issues[errors & issues["source_row"].map(first_at).isna().to_numpy()].drop_duplicates("source_row")
        self.unread = pd.DataFrame({"source_row": unread["source_row"].astype("Int64").to_numpy(), "stock_id": unread["stock_id"].astype("string").to_numpy()})

    def apply(self) -> None:
        rows = self.rows
        urls = arrow_strings(rows["image_url"])
        missing = pc.is_null(urls).to_numpy(zero_copy_only=False)
        self.report(missing, "image_url", "missing_url", "error")
        not_url = ~missing & ~pc.fill_null(pc.match_substring_regex(urls, URL_PATTERN), True).to_numpy(zero_copy_only=False)
        self.report(not_url, "image_url", "not_a_url", "error", value=rows["image_url"])

        vins = arrow_strings(rows["vin"])
        invalid_vin = ~pc.fill_null(pc.match_substring_regex(vins, VIN_PATTERN), True).to_numpy(zero_copy_only=False)
        self.report(invalid_vin, "vin", "invalid_vin", "warning")  # a VIN is personal data in the UK: never quoted
        rows.loc[invalid_vin, "vin"] = pd.NA

        low = (rows["position"] < 1).fillna(False).to_numpy()
        self.report(low, "position", "invalid_position", "warning", value=rows["position"].astype("string"))
        rows.loc[low, "position"] = pd.NA

        nameless = ~rows[IDENTIFIER_COLUMNS].notna().any(axis=1).to_numpy()
        self.report(nameless, "stock_id/vin/registration", "no_vehicle", "error")

        vehicle = rows["stock_id"].fillna("\x00vin:" + rows["vin"]).fillna("\x00reg:" + rows["registration"])
        usable = ~self.bad
        repeated = pd.DataFrame({"vehicle": vehicle, "url": rows["image_url"]})[usable].duplicated(keep="first").to_numpy()
        self.later[np.flatnonzero(usable)[repeated]] = True
        self.report(self.later, "image_url", "duplicate_image", "warning", value=rows["image_url"])

    def _found(self) -> pd.DataFrame:
        if not self.found:
            return empty_issues().assign(_at=pd.Series(dtype="int64"), _carried=pd.Series(dtype="bool"))
        return pd.concat(self.found, ignore_index=True)

    def issue_frame(self) -> pd.DataFrame:
        found = self._found().sort_values(["source_row", "_at"], kind="stable", na_position="first")
        types = {"source_row": "Int64", "stock_id": "string", "field": "string", "rule": "string", "value": "string", "severity": "string", "message": "string"}
        return found[ISSUE_COLUMNS].astype(types).reset_index(drop=True)

    def accepted(self) -> pd.DataFrame:
        return self.rows.loc[~self.bad & ~self.later, IMAGE_COLUMNS].reset_index(drop=True)

    def quarantined(self) -> pd.DataFrame:
        """The refused image rows, each with every error that refused it (the engine's for its record, then the row rules')."""
        found = self._found()
        own = found[(found["severity"] == "error") & ~found["_carried"].astype(bool)].groupby("_at", sort=True)["message"].agg("; ".join)
        at = np.flatnonzero(self.bad)
        refused = self.rows.iloc[at][IMAGE_COLUMNS].copy()
        carried = pd.Series(self.carried_errors.reindex(refused["source_row"].astype("Int64").to_numpy()).to_numpy(), dtype="string")
        mine = pd.Series(own.reindex(at).to_numpy(), dtype="string")
        reason = carried.str.cat(mine, sep="; ", na_rep="").str.strip("; ")
        refused["reason"] = pd.array(reason.to_numpy(), dtype="string")
        if len(self.unread):
            whole = coerce_to_schema(self.unread.assign(dealer_id=self.rows["dealer_id"].iloc[0] if len(self.rows) else pd.NA, source_file=self.file_name))
            whole["reason"] = pd.array(self.carried_errors.reindex(self.unread["source_row"].to_numpy()).to_numpy(), dtype="string")
            refused = pd.concat([refused, whole], ignore_index=True).sort_values("source_row", kind="stable")
        return refused.reset_index(drop=True)
