"""The probabilistic tier: the Splink settings, unsupervised training, the pinned model JSON, and scoring new records against existing ones and among themselves with waterfall evidence."""

import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import duckdb
import pandas as pd

MODEL_PACKAGE = "dms_pipelines.identity"
MODEL_FOLDER = "models"
MODEL_FILE = "customer_match_v1.json"
UNIQUE_ID_SEPARATOR = "|"
MODEL_INPUT_COLUMNS = ["unique_id", "first_name", "last_name", "email", "phones", "sole_phones", "postcode", "town"]
TERM_FREQUENCY_COLUMNS = ("first_name", "last_name", "email", "town")
PAIR_COLUMNS = ["unique_id_l", "unique_id_r", "match_probability", "match_weight", "evidence"]


def unique_id(record_kind: str, record_key: str) -> str:
    return f"{record_kind}{UNIQUE_ID_SEPARATOR}{record_key}"


def model_input(records: pd.DataFrame, shared_phones: set[str]) -> pd.DataFrame:
    """The frame Splink reads: identity records with a unique_id, phones as a list (None when there is none) and the
    numbers among them that no other customer holds (`sole_phones`): a household's shared number is weaker evidence."""
    phones = [list(values) if len(values) else None for values in records["phones"]]
    return pd.DataFrame(
        {
            "unique_id": [unique_id(kind, key) for kind, key in zip(records["record_kind"], records["record_key"])],
            "first_name": records["first_name"].to_numpy(),
            "last_name": records["last_name"].to_numpy(),
            "email": records["email"].to_numpy(),
            "phones": phones,
            "sole_phones": [[phone for phone in values if phone not in shared_phones] if values else None for values in phones],
            "postcode": records["postcode"].to_numpy(),
            "town": records["town"].to_numpy(),
        }
    )


def settings():
    """The model's Splink settings: blocking rules, comparisons (term frequency adjustments on names, e-mail and town)."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    def name(column: str):
        # one slip (Damerau-Levenshtein 1) is a typo; a looser likeness (Jaro-Winkler) is weaker: Oliver and Olivia are siblings
        return cl.CustomComparison(
            output_column_name=column,
            comparison_description=f"{column}: exact (term frequency adjusted), one edit, similar, different",
            comparison_levels=[
                cll.NullLevel(column),
                cll.ExactMatchLevel(column, term_frequency_adjustments=True),
                cll.CustomLevel(
                    f"damerau_levenshtein({column}_l, {column}_r) <= 1 AND least(length({column}_l), length({column}_r)) >= 5",
                    label_for_charts=f"One edit apart on {column} (five letters or more)",
                ),
                cll.JaroWinklerLevel(column, 0.9),
                cll.ElseLevel(),
            ],
        )

    # EmailComparison's Jaro-Winkler levels call a household's addresses alike (olivia.davies@ and george.davies@):
    # a near miss is one edit of the whole address keeping its digits (georgesmith12@ and georgesmith15@ are namesakes), and a
    # shared username on another domain is left out (jsmith12 is many people's).
    email = cl.CustomComparison(
        output_column_name="email",
        comparison_description="E-mail: exact (term frequency adjusted), one edit, different",
        comparison_levels=[
            cll.NullLevel("email"),
            cll.ExactMatchLevel("email", term_frequency_adjustments=True),
            cll.CustomLevel(
                "damerau_levenshtein(email_l, email_r) <= 1 AND regexp_replace(email_l, '[^0-9]', '', 'g') = regexp_replace(email_r, '[^0-9]', '', 'g')",
                label_for_charts="One edit apart on email, same digits",
            ),
            cll.ElseLevel(),
        ],
    )

    phone = cl.CustomComparison(
        output_column_name="phones",
        comparison_description="Phone numbers (E.164), a number several customers share (a household's) apart",
        comparison_levels=[
            {"sql_condition": "phones_l IS NULL OR phones_r IS NULL", "label_for_charts": "Phone missing", "is_null_level": True},
            {"sql_condition": "len(list_intersect(sole_phones_l, sole_phones_r)) > 0", "label_for_charts": "Same phone (one customer's)"},
            {"sql_condition": "len(list_intersect(phones_l, phones_r)) > 0", "label_for_charts": "Same phone (shared by several customers)"},
            {"sql_condition": "ELSE", "label_for_charts": "Different phones"},
        ],
    )
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="unique_id",
        blocking_rules_to_generate_predictions=[
            block_on("email"),
            block_on("phones", arrays_to_explode=["phones"]),
            block_on("postcode"),
            block_on("last_name", "substr(first_name, 1, 1)"),
        ],
        comparisons=[
            name("first_name"),
            name("last_name"),
            email,
            phone,
            cl.PostcodeComparison("postcode"),
            cl.ExactMatch("town").configure(term_frequency_adjustments=True),
        ],
        retain_matching_columns=True,  # (for the gamma_* columns; the values themselves are never read back)
        retain_intermediate_calculation_columns=True,
        max_iterations=50,
    )


def _connection() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect(":memory:")
    connection.execute("SET preserve_insertion_order = true")
    return connection


def train_model(records: pd.DataFrame, seed: int, shared_phones: set[str] = frozenset(), max_pairs: float = 5e6) -> dict:
    """A model trained without labels on identity records: the probability two random records match from deterministic
    rules, u by random sampling with `seed`, m by expectation maximisation on two blocking rules. Returns the model dict
    (what `save_model` writes); training belongs to devtools, never to a normal run."""
    from splink import DuckDBAPI, Linker, block_on

    db_api = DuckDBAPI(_connection())
    frame = db_api.register(model_input(records, shared_phones).sort_values("unique_id", kind="stable").reset_index(drop=True), table_name="identity_training")
    linker = Linker(frame, settings(), log_level=None)
    linker.training.estimate_probability_two_random_records_match([block_on("email"), block_on("first_name", "last_name", "postcode")], recall=0.8)
    linker.training.estimate_u_using_random_sampling(max_pairs=max_pairs, seed=seed)
    # EM on pairs sharing an e-mail (estimates names, phone, address) and on pairs sharing first and last name (estimates
    # e-mail, phone, address): never on a shared postcode or phone alone, whose pairs are mostly households, not persons.
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("email"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("first_name", "last_name"))
    model = pin_untrainable_levels(linker.misc.save_model_to_json())
    model["linker_uid"] = "customer_match_v1"
    return model


UNOBSERVED_M_PROBABILITY = 0.002  # a level EM never saw among matches (e.g. first names wholly different): rare, not impossible
SHARED_PHONE_MAX_BAYES_FACTOR = 4.0  # a household's number points at the household, which the postcode already weighs


def pin_untrainable_levels(model: dict) -> dict:
    """The trained model with two levels pinned by rule: a level without an m estimate gets UNOBSERVED_M_PROBABILITY, and
    the shared-phone level's bayes factor is capped at SHARED_PHONE_MAX_BAYES_FACTOR (family members share the phone, the
    address and the surname: counted once, not three times)."""
    for comparison in model["comparisons"]:
        for level in comparison["comparison_levels"]:
            if level.get("is_null_level"):
                continue
            if level.get("m_probability") is None:
                level["m_probability"] = UNOBSERVED_M_PROBABILITY
            if comparison["output_column_name"] == "phones" and level["label_for_charts"].startswith("Same phone (shared"):
                level["m_probability"] = min(level["m_probability"], SHARED_PHONE_MAX_BAYES_FACTOR * level["u_probability"])
    return model


def save_model(model: dict, path: Path) -> None:
    path.write_text(json.dumps(model, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def load_model(path: Path | None = None) -> dict:
    """The pinned model: the JSON shipped in the package (or the one at `path`)."""
    if path is not None:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    return json.loads(resources.files(MODEL_PACKAGE).joinpath(MODEL_FOLDER, MODEL_FILE).read_text(encoding="utf-8"))


@dataclass(frozen=True)
class ComparisonLevels:
    """One comparison of the model: its output column and each comparison vector value's chart label."""

    name: str
    labels: dict[int, str]


def comparison_levels(model: dict) -> list[ComparisonLevels]:
    """For each comparison, the label of each level by its comparison vector value (-1 for the null level; the others
    count down from the most specific, as Splink numbers them)."""
    found = []
    for comparison in model["comparisons"]:
        levels = comparison["comparison_levels"]
        not_null = [level for level in levels if not level.get("is_null_level")]
        labels = {-1: next((level["label_for_charts"] for level in levels if level.get("is_null_level")), "null")}
        for position, level in enumerate(not_null):
            labels[len(not_null) - 1 - position] = level["label_for_charts"]
        found.append(ComparisonLevels(comparison["output_column_name"], labels))
    return found


def _number(value) -> float:
    return 0.0 if value is None or pd.isna(value) else float(value)


def evidence_json(row: dict, levels: list[ComparisonLevels], prior_log2: float) -> str:
    """The waterfall of one scored pair as JSON: the prior, then per comparison its level, bayes factor and log2 weight
    (with the term frequency adjustment's log2 weight), and the total match weight. No value of either record."""
    comparisons = []
    for comparison in levels:
        gamma = int(row[f"gamma_{comparison.name}"])
        weight = _number(row.get(f"mw_{comparison.name}"))
        tf_weight = _number(row.get(f"mw_tf_adj_{comparison.name}"))
        comparisons.append(
            {
                "comparison": comparison.name,
                "level": comparison.labels.get(gamma, str(gamma)),
                "comparison_vector_value": gamma,
                "log2_bayes_factor": round(weight, 4),
                "bayes_factor": float(f"{2**weight:.6g}"),
                "tf_adjustment_log2": round(tf_weight, 4),
                "contribution_log2": round(weight + tf_weight, 4),
            }
        )
    return json.dumps({"prior_log2": round(prior_log2, 4), "comparisons": comparisons, "match_weight": round(float(row["match_weight"]), 4)}, sort_keys=True)


class Scorer:
    """The pinned model on one DuckDB database in memory holding the records of a reconcile (the existing ones it may
    pair, and the new): term frequencies from `population` (default: those records); new records scored against the
    existing ones and among themselves."""

    def __init__(self, model: dict, existing: pd.DataFrame, new: pd.DataFrame, shared_phones: set[str], threads: int | None = None, population: pd.DataFrame | None = None):
        from splink import DuckDBAPI, Linker

        self.model = model
        self.connection = _connection()
        if threads is not None:
            self.connection.execute(f"SET threads = {int(threads)}")
        existing_input = model_input(existing, shared_phones)
        new_input = model_input(new, shared_phones)
        self.connection.register("existing_input_frame", existing_input)
        self.connection.register("new_input_frame", new_input)
        self.connection.execute("CREATE TABLE identity_existing AS SELECT * FROM existing_input_frame ORDER BY unique_id")
        self.connection.execute("CREATE TABLE identity_new AS SELECT * FROM new_input_frame ORDER BY unique_id")
        self.connection.execute("CREATE VIEW identity_all AS SELECT * FROM identity_existing UNION ALL SELECT * FROM identity_new")
        self.connection.unregister("existing_input_frame")
        self.connection.unregister("new_input_frame")
        self.db_api = DuckDBAPI(self.connection)
        self.all = self.db_api.register("identity_all", table_name="identity_all_records")
        self.existing = self.db_api.register("identity_existing", table_name="identity_existing_records")
        self.new = self.db_api.register("identity_new", table_name="identity_new_records")
        self.linker = Linker(self.all, model, log_level=None)
        if population is None:
            for column in TERM_FREQUENCY_COLUMNS:
                self.linker.table_management.compute_tf_table(column)
        else:
            self._register_term_frequencies(population)
        self.levels = comparison_levels(model)
        probability = model["probability_two_random_records_match"]
        self.prior_log2 = math.log2(probability / (1 - probability))
        self.has_existing = len(existing) > 0

    def _register_term_frequencies(self, population: pd.DataFrame) -> None:
        """Term frequency tables counted over `population` (every record, when only some are scored), in Splink's own
        formula: a value's rows over the column's non-null rows."""
        self.connection.register("term_frequency_population", population)
        for column in TERM_FREQUENCY_COLUMNS:
            table = f"identity_tf_{column}"
            self.connection.execute(
                f"CREATE TABLE {table} AS SELECT {column}, cast(count(*) AS float8) / (SELECT count({column}) FROM term_frequency_population) AS tf_{column}"
                f" FROM term_frequency_population WHERE {column} IS NOT NULL GROUP BY {column}"
            )
            self.linker.table_management.register_term_frequency_lookup(self.db_api.register(table, table_name=f"{table}_lookup"), column)
        self.connection.unregister("term_frequency_population")

    def _pairs(self, predictions, lower: float) -> pd.DataFrame:
        available = set(self.connection.execute(f"SELECT * FROM {predictions.physical_name} LIMIT 0").df().columns)
        weights = [name for c in self.levels for name in (f"gamma_{c.name}", f"mw_{c.name}", f"mw_tf_adj_{c.name}") if name in available]
        columns = ", ".join(["unique_id_l", "unique_id_r", "match_probability", "match_weight", *weights])
        sql = f"SELECT {columns} FROM {predictions.physical_name} WHERE match_probability >= {float(lower)!r} ORDER BY unique_id_r, unique_id_l"
        frame = self.connection.execute(sql).df()
        predictions.drop_table_from_database_and_remove_from_cache()
        return frame

    def between(self, lower: float) -> pd.DataFrame:
        """Pairs (existing record `unique_id_l`, new record `unique_id_r`) at or above `lower`, with gamma_* and mw_* (log2 weight) columns."""
        if not self.has_existing:
            return pd.DataFrame(columns=["unique_id_l", "unique_id_r", "match_probability", "match_weight"])
        return self._pairs(self.linker.inference.predict_between(self.existing, self.new, threshold_match_probability=lower, warning_mode="never"), lower)

    def within(self, lower: float) -> pd.DataFrame:
        """Pairs of new records at or above `lower` (each pair once, `unique_id_l` < `unique_id_r`)."""
        frame = self._pairs(self.linker.inference.predict_within(self.new, threshold_match_probability=lower, warning_mode="never"), lower)
        swap = frame["unique_id_l"] > frame["unique_id_r"]
        frame.loc[swap, ["unique_id_l", "unique_id_r"]] = frame.loc[swap, ["unique_id_r", "unique_id_l"]].to_numpy()
        return frame

    def evidence(self, row: dict) -> str:
        return evidence_json(row, self.levels, self.prior_log2)

    def close(self) -> None:
        self.connection.close()
