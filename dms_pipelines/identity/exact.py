"""The deterministic tier: a new record's normalised e-mail or E.164 phone held by exactly one other identity, with the guard that a value several DMS customers share (a household's phone) is no proof."""

from dataclasses import dataclass

import pandas as pd

EXACT_COLUMNS = ("email", "phones")
TIER_BY_COLUMN = {"email": "email", "phones": "phone"}
EDGE_COLUMNS = ["unique_id", "tier", "target_cluster_id", "target_unique_id", "target_is_new"]
GUARD_COLUMNS = ["unique_id", "tier", "holders"]


@dataclass(frozen=True)
class ExactMatches:
    """What the exact tier found for the new records.

    `edges`: one row per proof (unique_id of the new record, tier 'email'|'phone', the existing cluster it proves, or the
    other new record); `guarded`: values a new record shares with several customers (not proof; the model decides), with
    how many; `shared_phones`: every number two or more customers hold (the model weighs them as a household's)."""

    edges: pd.DataFrame
    guarded: pd.DataFrame
    shared_phones: set[str]


def _holdings(existing: pd.DataFrame, new: pd.DataFrame, column: str) -> pd.DataFrame:
    """One row per (record, value of `column`): unique_id, record_kind, is_new, owner (an existing record's cluster, a new
    record's own unique_id), first_name, value."""
    parts = []
    for frame, is_new in ((existing, False), (new, True)):
        if frame.empty:
            continue
        part = pd.DataFrame(
            {
                "unique_id": frame["unique_id"].to_numpy(),
                "record_kind": frame["record_kind"].to_numpy(),
                "is_new": is_new,
                "owner": frame["unique_id"].to_numpy() if is_new else frame["cluster_id"].to_numpy(),
                "first_name": frame["first_name"].fillna("").to_numpy(),
                "value": frame[column].to_numpy(),
            }
        )
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=["unique_id", "record_kind", "is_new", "owner", "first_name", "value"])
    held = pd.concat(parts, ignore_index=True)
    if column == "phones":
        held = held.explode("value")
    return held[held["value"].notna()].reset_index(drop=True)


def find_exact_matches(existing: pd.DataFrame, new: pd.DataFrame) -> ExactMatches:
    """The exact tier for `new` records against `existing` ones (with cluster_id) and each other; both frames need
    unique_id, record_kind, email and phones.

    For a value of a new record: when customers of two or more first names hold it (a household; the record itself
    included) it is no proof. Otherwise the other identities holding
    it (existing clusters, new customer records) prove the match when there is exactly one; with two or more it is no
    proof either. New leads sharing a value that is proof-worthy are tied to each other (to the first of them)."""
    edges, guarded = [], []
    shared_phones: set[str] = set()
    for column in EXACT_COLUMNS:
        tier = TIER_BY_COLUMN[column]
        held = _holdings(existing, new, column)
        customers = held[held["record_kind"] == "customer"]
        # a household: customers of different first names holding the value (one person's two DMS records is a duplicate)
        customer_owners = customers.groupby("value")["first_name"].nunique()
        if column == "phones":
            shared_phones = set(customer_owners[customer_owners >= 2].index)
        relevant = held[held["value"].isin(set(held.loc[held["is_new"], "value"]))]
        existing_owners = relevant[~relevant["is_new"]].groupby("value")["owner"].agg(["nunique", "min"])
        new_customers = relevant[relevant["is_new"] & (relevant["record_kind"] == "customer")].groupby("value")["unique_id"].agg(["count", "min"])
        new_leads = relevant[relevant["is_new"] & (relevant["record_kind"] == "lead")].groupby("value")["unique_id"].min()
        mine = relevant[relevant["is_new"]][["unique_id", "record_kind", "value"]].drop_duplicates(["unique_id", "value"])
        values = mine["value"]
        holders = values.map(customer_owners).fillna(0).astype(int)
        existing_count = values.map(existing_owners["nunique"]).fillna(0).astype(int)
        new_customer_count = values.map(new_customers["count"]).fillna(0).astype(int)
        is_customer = mine["record_kind"] == "customer"
        identities = existing_count + new_customer_count - is_customer.astype(int)
        shared = (holders >= 2) | (identities >= 2)
        for unique_id, count in zip(mine.loc[shared, "unique_id"], pd.concat([holders, identities], axis=1).max(axis=1)[shared]):
            guarded.append((unique_id, tier, int(count)))
        proof = mine[~shared & (identities == 1)]
        to_existing = proof[values[proof.index].map(existing_owners["nunique"]).fillna(0).astype(int) == 1]
        for unique_id, value in zip(to_existing["unique_id"], to_existing["value"]):
            edges.append((unique_id, tier, existing_owners.at[value, "min"], None, False))
        to_new_customer = proof.drop(to_existing.index)
        for unique_id, value in zip(to_new_customer["unique_id"], to_new_customer["value"]):
            other = new_customers.at[value, "min"]
            if other != unique_id:
                edges.append((unique_id, tier, None, other, True))
        lead_peers = mine[~shared & (identities <= 1)]
        first_lead = lead_peers["value"].map(new_leads)
        tied = lead_peers[first_lead.notna() & (first_lead != lead_peers["unique_id"])]
        for unique_id, other in zip(tied["unique_id"], first_lead[tied.index]):
            edges.append((unique_id, tier, None, other, True))
    edge_frame = pd.DataFrame(edges, columns=EDGE_COLUMNS).drop_duplicates()
    edge_frame = edge_frame.sort_values(["unique_id", "tier", "target_cluster_id", "target_unique_id"], na_position="first", kind="stable")
    guard_frame = pd.DataFrame(guarded, columns=GUARD_COLUMNS).groupby(["unique_id", "tier"], as_index=False)["holders"].max().sort_values(["unique_id", "tier"], kind="stable")
    return ExactMatches(edge_frame.reset_index(drop=True), guard_frame.reset_index(drop=True), shared_phones)


def shared_phones_of(records: pd.DataFrame) -> set[str]:
    """The numbers customers of two or more first names hold (a household's), for training."""
    customers = records[records["record_kind"] == "customer"]
    held = customers.assign(value=customers["phones"], first_name=customers["first_name"].fillna("")).explode("value").dropna(subset=["value"])
    counts = held.groupby("value")["first_name"].nunique()
    return set(counts[counts >= 2].index)
