"""The incremental identity driver: new or changed records of one dealer tied to existing clusters (exact tier, then the pinned model, then thresholds and operator decisions), the existing clusters left as they are."""

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dms_pipelines.identity.exact import find_exact_matches, shared_phones_of
from dms_pipelines.identity.model import TERM_FREQUENCY_COLUMNS, UNIQUE_ID_SEPARATOR, Scorer, unique_id
from dms_pipelines.identity.records import RECORD_COLUMNS

DEFAULT_UPPER = 0.99
DEFAULT_LOWER = 0.5
ASSIGNMENT_COLUMNS = [
    "record_kind",
    "record_key",
    "cluster_id",
    "tier",
    "outcome",
    "match_probability",
    "match_weight",
    "candidate_key",
    "candidate_cluster_id",
    "reason",
    "evidence",
]
DECISION_COLUMNS = ["record_kind", "record_key", "cluster_id", "decision"]  # decision: 'accept' | 'reject'
TIER_RANK = {"accepted": 0, "email": 1, "phone": 2, "model": 3}


@dataclass
class Reconciliation:
    """The outcome of one reconcile: `assignments` (one row per new record, ASSIGNMENT_COLUMNS, sorted by record_kind,
    record_key) and `clusters` (record_kind, record_key, cluster_id of every record, existing and new, sorted)."""

    assignments: pd.DataFrame
    clusters: pd.DataFrame

    @property
    def review_queue(self) -> pd.DataFrame:
        """The records waiting for an operator: each with its candidate cluster and the evidence."""
        return self.assignments[self.assignments["outcome"] == "review"].reset_index(drop=True)


def new_cluster_id(dealer_id: str, record_kind: str, record_key: str, taken: set[str] = frozenset()) -> str:
    """A new cluster's id, from its first record: "P-" and the first 12 hex digits of sha256(dealer, kind, key); when that
    id is already an existing cluster's (the record was re-submitted), a numbered variant, still deterministic."""
    attempt = 0
    while True:
        suffix = "" if attempt == 0 else f"#{attempt}"
        cluster = "P-" + hashlib.sha256(f"{dealer_id}{record_kind}{record_key}{suffix}".encode()).hexdigest()[:12]
        if cluster not in taken:
            return cluster
        attempt += 1


def _prepare(frame: pd.DataFrame, with_cluster: bool) -> pd.DataFrame:
    columns = RECORD_COLUMNS + (["cluster_id"] if with_cluster else [])
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"identity records lack columns {missing}")
    prepared = frame[columns].copy()
    prepared["record_key"] = prepared["record_key"].astype(str)
    prepared["phones"] = [list(value) if isinstance(value, list | tuple) or hasattr(value, "tolist") else [] for value in prepared["phones"]]
    prepared["unique_id"] = [unique_id(kind, key) for kind, key in zip(prepared["record_kind"], prepared["record_key"])]
    if prepared["unique_id"].duplicated().any():
        raise ValueError("an identity record appears twice (record_kind and record_key repeat)")
    return prepared.sort_values("unique_id", kind="stable").reset_index(drop=True)


def _kept_existing(existing: pd.DataFrame, new_ids: set[str]) -> pd.DataFrame:
    """The existing records less those the new frame holds again (changed), with a unique_id, checked for repeats; built
    with whole-column operations, since this frame is every record of the dealer."""
    columns = RECORD_COLUMNS + ["cluster_id"]
    missing = [column for column in columns if column not in existing.columns]
    if missing:
        raise ValueError(f"identity records lack columns {missing}")
    kept = existing[columns].reset_index(drop=True)
    ids = kept["record_kind"].astype(str) + UNIQUE_ID_SEPARATOR + kept["record_key"].astype(str)
    if ids.duplicated().any():
        raise ValueError("an identity record appears twice (record_kind and record_key repeat)")
    return kept.assign(unique_id=ids.to_numpy())[~ids.isin(new_ids).to_numpy()].reset_index(drop=True)


def _name_block(records: pd.DataFrame) -> pd.Series:
    """The last name and first initial, as the model's name blocking rule compares them."""
    return records["last_name"].astype("object") + "\x1f" + records["first_name"].astype("object").str[:1]


def _sharing_a_blocking_key(existing: pd.DataFrame, new: pd.DataFrame) -> np.ndarray:
    """Which existing records share a value of a blocking rule (e-mail, a phone, postcode, last name with first initial)
    with a new record: the only ones the model can pair with a new record, and the only holders of a new record's e-mail
    or phone the exact tier looks at."""
    shared = np.zeros(len(existing), dtype=bool)
    for column in ("email", "postcode"):
        shared |= existing[column].isin(set(new[column].dropna())).to_numpy()
    shared |= _name_block(existing).isin(set(_name_block(new).dropna())).to_numpy()
    phones = existing["phones"].explode()
    new_phones = set(new["phones"].explode().dropna())
    shared[np.unique(phones.index[phones.isin(new_phones).to_numpy()])] = True
    return shared


def _decisions(decisions: pd.DataFrame | None) -> tuple[dict[str, str], set[tuple[str, str]]]:
    """Accepted joins (unique_id -> cluster) and rejected pairs ((unique_id, cluster)); the latest accept per record wins
    by cluster id order (an operator accepts one)."""
    if decisions is None or decisions.empty:
        return {}, set()
    frame = decisions[DECISION_COLUMNS].copy()
    frame["unique_id"] = [unique_id(kind, str(key)) for kind, key in zip(frame["record_kind"], frame["record_key"])]
    accepted = frame[frame["decision"] == "accept"].sort_values(["unique_id", "cluster_id"])
    rejected = frame[frame["decision"] == "reject"]
    unknown = set(frame["decision"]) - {"accept", "reject"}
    if unknown:
        raise ValueError(f"unknown decision(s) {sorted(unknown)}: accept or reject")
    return dict(zip(accepted["unique_id"], accepted["cluster_id"])), set(zip(rejected["unique_id"], rejected["cluster_id"]))


class _Components:
    """Union-find over new records where a component is tied to at most one existing cluster and never to a cluster any of
    its records rejected."""

    def __init__(self, ids: list[str], anchors: dict[str, str], rejected: dict[str, set[str]]):
        self.parent = {i: i for i in ids}
        self.anchor = {i: anchors.get(i) for i in ids}
        self.rejected = {i: set(rejected.get(i, ())) for i in ids}

    def find(self, item: str) -> str:
        root = item
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[item] != root:
            self.parent[item], item = root, self.parent[item]
        return root

    def union(self, left: str, right: str) -> bool:
        a, b = self.find(left), self.find(right)
        if a == b:
            return False
        anchor_a, anchor_b = self.anchor[a], self.anchor[b]
        if anchor_a is not None and anchor_b is not None and anchor_a != anchor_b:
            return False
        anchor = anchor_a or anchor_b
        if anchor is not None and (anchor in self.rejected[a] or anchor in self.rejected[b]):
            return False
        keep, drop = (a, b) if a < b else (b, a)
        self.parent[drop] = keep
        self.anchor[keep] = anchor
        self.rejected[keep] |= self.rejected[drop]
        return True


def _reason_for_exact(tier: str) -> str:
    return f"{'e-mail' if tier == 'email' else 'phone'} exact"


def _guard_note(guarded: pd.DataFrame) -> dict[str, str]:
    notes: dict[str, list[str]] = {}
    for row in guarded.itertuples(index=False):
        label = "e-mail" if row.tier == "email" else "phone"
        notes.setdefault(row.unique_id, []).append(f"{label} exact (shared by {row.holders} customers: not proof)")
    return {key: "; ".join(value) for key, value in notes.items()}


def reconcile(
    existing: pd.DataFrame,
    new: pd.DataFrame,
    model: dict,
    upper: float = DEFAULT_UPPER,
    lower: float = DEFAULT_LOWER,
    decisions: pd.DataFrame | None = None,
    threads: int | None = None,
    narrow_candidates: bool = True,
) -> Reconciliation:
    """Tie each `new` identity record (RECORD_COLUMNS) to an `existing` cluster (RECORD_COLUMNS + cluster_id) or to a new
    one; all records are one dealer's.

    Only the new records are scored: against existing records and among themselves. Existing records keep their
    cluster ids; a record in both frames is taken as changed (its new version is scored, its existing row set aside).
    Per record, first match wins: an operator's accept; e-mail exact; phone exact; the model at or above `upper` (the
    highest probability's cluster when several are strong: existing clusters are never merged); new records tied to
    each other the same way (strongest first). Left alone, a record with a candidate in [lower, upper) goes to review
    with a provisional cluster of its own; one without is a new cluster. A rejected (record, cluster) pair never joins
    and never comes back to review. The result depends only on the inputs, not on their order.

    Only existing records sharing a blocking key with a new record are prepared and scored (term frequencies and
    shared phones still count every record); `narrow_candidates=False` scores against all of them, which must give the
    same result (the tests hold the narrowed run to it)."""
    if not 0 <= lower <= upper <= 1:
        raise ValueError("thresholds must satisfy 0 <= lower <= upper <= 1")
    new_records = _prepare(new, with_cluster=False)
    kept = _kept_existing(existing, set(new_records["unique_id"]))
    population = pd.concat([kept[RECORD_COLUMNS], new_records[RECORD_COLUMNS]], ignore_index=True)
    shared_phones = shared_phones_of(population)
    candidates = kept[_sharing_a_blocking_key(kept, new_records)] if narrow_candidates else kept
    existing_records = _prepare(candidates, with_cluster=True)
    accepted, rejected_pairs = _decisions(decisions)
    rejected_by_record: dict[str, set[str]] = {}
    for record, cluster in rejected_pairs:
        rejected_by_record.setdefault(record, set()).add(cluster)
    cluster_of = dict(zip(existing_records["unique_id"], existing_records["cluster_id"]))
    key_of = dict(zip(new_records["unique_id"], new_records["record_key"]))
    key_of.update(zip(existing_records["unique_id"], existing_records["record_key"]))
    dealer_of = dict(zip(new_records["unique_id"], new_records["dealer_id"]))
    kind_of = dict(zip(new_records["unique_id"], new_records["record_kind"]))
    ids = list(new_records["unique_id"])

    exact = find_exact_matches(existing_records, new_records)
    guard_notes = _guard_note(exact.guarded)
    between = within = pd.DataFrame(columns=["unique_id_l", "unique_id_r", "match_probability", "match_weight"])
    scorer = None
    if ids:
        scorer = Scorer(model, existing_records, new_records, shared_phones, threads=threads, population=population[list(TERM_FREQUENCY_COLUMNS)])
        between = scorer.between(lower)
        within = scorer.within(lower)

    # candidates to existing clusters: (new id, cluster, tier, probability, weight, existing record, scored row)
    candidates: list[tuple] = []
    for row in exact.edges[~exact.edges["target_is_new"]].itertuples(index=False):
        candidates.append((row.unique_id, row.target_cluster_id, row.tier, 1.0, None, None))
    between_rows = between.to_dict("records")
    for index, row in enumerate(between_rows):
        candidates.append((row["unique_id_r"], cluster_of[row["unique_id_l"]], "model", float(row["match_probability"]), row["unique_id_l"], index))
    best_existing: dict[str, list[tuple]] = {}
    for candidate in candidates:
        if (candidate[0], candidate[1]) in rejected_pairs:
            continue
        best_existing.setdefault(candidate[0], []).append(candidate)
    for options in best_existing.values():
        options.sort(key=lambda c: (TIER_RANK[c[2]] if c[2] != "model" or c[3] >= upper else 9, -c[3], c[1], c[4] or ""))

    anchors: dict[str, str] = dict(accepted)
    anchor_choice: dict[str, tuple] = {}
    for record, options in best_existing.items():
        if record in accepted:
            continue
        first = options[0]
        if first[2] != "model" or first[3] >= upper:
            anchors[record] = first[1]
            anchor_choice[record] = first
    pending = {record for record, options in best_existing.items() if record not in anchors and any(option[2] == "model" and lower <= option[3] < upper for option in options)}

    components = _Components(ids, anchors, rejected_by_record)
    strong: list[tuple] = []
    for row in exact.edges[exact.edges["target_is_new"]].itertuples(index=False):
        strong.append((TIER_RANK[row.tier], -1.0, *sorted((row.unique_id, row.target_unique_id)), row.tier, None))
    within_rows = within.to_dict("records")
    within_by_record: dict[str, list[dict]] = {}
    for scored in within_rows:
        within_by_record.setdefault(scored["unique_id_l"], []).append(scored)
        within_by_record.setdefault(scored["unique_id_r"], []).append(scored)
    for index, row in enumerate(within_rows):
        if float(row["match_probability"]) >= upper:
            strong.append((TIER_RANK["model"], -float(row["match_probability"]), row["unique_id_l"], row["unique_id_r"], "model", index))
    strong.sort(key=lambda edge: edge[:4])
    tree: dict[str, list[tuple]] = {}
    for rank, negative_probability, left, right, tier, index in strong:
        if left in pending or right in pending:
            continue
        if components.union(left, right):
            tree.setdefault(left, []).append((right, tier, -negative_probability, index))
            tree.setdefault(right, []).append((left, tier, -negative_probability, index))

    members: dict[str, list[str]] = {}
    for record in ids:
        members.setdefault(components.find(record), []).append(record)
    taken = set(kept["cluster_id"])
    cluster_by_root: dict[str, str] = {}
    for root in sorted(members):
        if components.anchor[root] is not None:
            cluster_by_root[root] = components.anchor[root]
        else:
            first = min(members[root])
            cluster_by_root[root] = new_cluster_id(dealer_of[first], kind_of[first], key_of[first], taken)
            taken.add(cluster_by_root[root])

    # how each record came into its cluster: its own anchor, or the tree edge from the component's start
    reached: dict[str, tuple] = {}
    for root, group in members.items():
        starts = sorted(record for record in group if record in anchors) or [min(group)]
        queue = list(starts)
        for start in starts:
            reached[start] = ("anchor",) if start in anchors else ("start",)
        while queue:
            record = queue.pop(0)
            for other, tier, probability, index in sorted(tree.get(record, ())):
                if other not in reached:
                    reached[other] = ("edge", record, tier, probability, index)
                    queue.append(other)

    assignments = []
    for record in ids:
        root = components.find(record)
        cluster = cluster_by_root[root]
        how = reached[record]
        note = guard_notes.get(record)
        row = dict.fromkeys(ASSIGNMENT_COLUMNS)
        row.update(record_kind=kind_of[record], record_key=key_of[record], cluster_id=cluster, evidence="{}")
        if record in accepted:
            row.update(tier="accepted", outcome="accepted", candidate_cluster_id=cluster, reason="accepted by operator")
        elif how[0] == "anchor":
            _, target, tier, probability, existing_record, index = anchor_choice[record]
            others = {option[1] for option in best_existing[record] if option[1] != target and (option[2] != "model" or option[3] >= upper)}
            reason = _reason_for_exact(tier) if tier != "model" else f"model p={probability:.3f}"
            if note and tier != "email":
                reason = f"{note}; {reason}"
            if others:
                reason += f" (also strong to {len(others)} other cluster(s): joined the most likely, clusters not merged)"
            row.update(tier=tier, outcome="joined", match_probability=probability, candidate_cluster_id=target, reason=reason)
            if existing_record is not None:
                scored = between_rows[index]
                row.update(match_weight=float(scored["match_weight"]), candidate_key=key_of.get(existing_record), evidence=scorer.evidence(scored))
        elif how[0] == "edge":
            _, via, tier, probability, index = how
            reason = _reason_for_exact(tier) + " (with a new record)" if tier != "model" else f"model p={probability:.3f} (with a new record)"
            if note and tier != "email":
                reason = f"{note}; {reason}"
            row.update(tier=tier, outcome="joined", match_probability=1.0 if tier != "model" else probability, candidate_key=key_of[via], candidate_cluster_id=cluster, reason=reason)
            if index is not None:
                scored = within_rows[index]
                row.update(match_weight=float(scored["match_weight"]), evidence=scorer.evidence(scored))
        else:
            _settle_alone(
                row,
                record,
                members[root],
                best_existing.get(record, []),
                within_by_record,
                cluster_by_root,
                components,
                rejected_pairs,
                key_of,
                lower,
                upper,
                scorer,
                between_rows,
                note,
                rejected_by_record,
            )
        assignments.append(row)
    if scorer is not None:
        scorer.close()
    assignment_frame = pd.DataFrame(assignments, columns=ASSIGNMENT_COLUMNS).sort_values(["record_kind", "record_key"], kind="stable").reset_index(drop=True)
    clusters = pd.concat([kept[["record_kind", "record_key", "cluster_id"]], assignment_frame[["record_kind", "record_key", "cluster_id"]]], ignore_index=True).sort_values(
        ["record_kind", "record_key"], kind="stable"
    )
    return Reconciliation(assignment_frame, clusters.reset_index(drop=True))


def _settle_alone(row, record, group, existing_options, within_by_record, cluster_by_root, components, rejected_pairs, key_of, lower, upper, scorer, between_rows, note, rejected_by_record):
    """A record no strong link reached: review when its best candidate (an existing cluster, or another new record's
    cluster) is in [lower, upper) and not rejected; otherwise the first record of a new cluster."""
    review = [option for option in existing_options if option[2] == "model" and lower <= option[3] < upper]
    best = None
    if review:
        option = review[0]
        best = (option[3], option[1], key_of.get(option[4]), between_rows[option[5]])
    if len(group) == 1:
        best = _best_within(record, within_by_record, cluster_by_root, components, rejected_pairs, key_of, lower, upper, best)
    if best is not None and len(group) == 1:
        probability, cluster, candidate_key, scored = best
        reason = f"model p={probability:.3f}: between the thresholds, for review"
        row.update(
            tier="review",
            outcome="review",
            match_probability=probability,
            match_weight=float(scored["match_weight"]),
            candidate_key=candidate_key,
            candidate_cluster_id=cluster,
            reason=f"{note}; {reason}" if note else reason,
            evidence=scorer.evidence(scored),
        )
        return
    rejected = rejected_by_record.get(record)
    reason = "no candidate at or above the lower threshold" if record == min(group) else "joined a new cluster"
    if rejected:
        reason = f"rejected by operator ({len(rejected)} cluster(s) not joined); {reason}"
    row.update(tier="new", outcome="rejected" if rejected else "new", reason=f"{note}; {reason}" if note else reason)


def _best_within(record, within_by_record, cluster_by_root, components, rejected_pairs, key_of, lower, upper, best):
    for scored in within_by_record.get(record, ()):
        other = scored["unique_id_r"] if scored["unique_id_l"] == record else scored["unique_id_l"]
        cluster = cluster_by_root[components.find(other)]
        probability = float(scored["match_probability"])
        if (record, cluster) in rejected_pairs or not lower <= probability < upper:
            continue
        if best is None or (probability, cluster) > (best[0], best[1]):
            best = (probability, cluster, key_of[other], scored)
    return best


def evidence_entries(evidence: str) -> list[dict]:
    """The per-comparison entries of an assignment's evidence JSON (empty for the exact tiers and new clusters)."""
    return json.loads(evidence).get("comparisons", [])
