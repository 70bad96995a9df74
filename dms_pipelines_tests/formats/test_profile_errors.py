"""A broken mapping profile is refused at load time with the file, the key path, the expression and the fix."""

import os
from pathlib import Path

import pytest
import yaml

from dms_pipelines.formats.profile import ProfileError, find_profile, load_profile
from dms_pipelines.paths import BUILTIN_PROFILES

NAMESPACES = {"inv": "urn:example:dealerstock:2"}


def xml_profile(fields: dict, **extra) -> dict:
    return {
        "name": "acme_xml",
        "format": "xml",
        "xml": {"record": "inv:Vehicle", "namespaces": NAMESPACES},
        "files": {"full": ["*.xml"]},
        "fields": {"stock_id": {"xpath": "@StockNo"}, **fields},
        **extra,
    }


def csv_profile(fields: dict, **extra) -> dict:
    return {"name": "acme_csv", "format": "csv", "csv": {"delimiter": ","}, "files": {"full": ["*.csv"]}, "fields": {"stock_id": {"column": "Stock"}, **fields}, **extra}


def refusal(tmp_path: Path, raw: dict | str) -> list[str]:
    """The problem lines of the ProfileError loading `raw` gives; the first line names the file."""
    path = tmp_path / "acme.yaml"
    path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    with pytest.raises(ProfileError) as refused:
        load_profile(path)
    first, *problems = str(refused.value).splitlines()
    assert first == f"{path} is not a valid mapping profile:"
    assert problems[-1] == "(the keys: docs/configuration.md#mapping-profiles)"
    return [line.strip() for line in problems[:-1]]


def test_a_misspelt_key_of_a_field_is_named_with_the_right_one(tmp_path):
    assert refusal(tmp_path, csv_profile({"colour": {"colum": "Colour"}})) == ["fields.colour.colum: unknown key (did you mean column?)"]


@pytest.mark.parametrize(
    ("section", "raw", "expected"),
    [
        ("top level", {**csv_profile({}), "feilds": {}}, "feilds: unknown key (did you mean fields?)"),
        ("csv", {**csv_profile({}), "csv": {"delimter": ";"}}, "csv.delimter: unknown key (did you mean delimiter?)"),
        ("xml", {**xml_profile({}), "xml": {"record": "Vehicle", "namespace": {}}}, "xml.namespace: unknown key (did you mean namespaces?)"),
        ("files", {**csv_profile({}), "files": {"full": ["*.csv"], "deltas": []}}, "files.deltas: unknown key (did you mean delta?)"),
        ("skip", csv_profile({}, skip=[{"column": "Usage", "in": ["Company"], "reasn": "company car"}]), "skip[0].reasn: unknown key (did you mean reason?)"),
    ],
)
def test_misspelt_keys_in_every_section_get_a_suggestion(tmp_path, section, raw, expected):
    assert expected in refusal(tmp_path, raw), section


def test_a_field_that_is_not_canonical_suggests_the_canonical_one(tmp_path):
    assert refusal(tmp_path, csv_profile({"color": {"column": "Colour"}})) == ["fields.color: not a canonical field (did you mean colour?); the fields are listed in docs/canonical-vehicle.md"]
    assert "constants.vehicle_typ: not a canonical field (did you mean vehicle_type?)" in refusal(tmp_path, csv_profile({}, constants={"vehicle_typ": "car"}))[0]


def test_a_key_typo_and_a_misspelt_field_are_both_named_at_once(tmp_path):
    assert refusal(tmp_path, xml_profile({"color": {"xpath": "@Colour"}, "vin": {"xpth": "@Vin"}}, constants={"vehicle_typ": "car"})) == [
        "fields.color: not a canonical field (did you mean colour?); the fields are listed in docs/canonical-vehicle.md",
        "constants.vehicle_typ: not a canonical field (did you mean vehicle_type?); the fields are listed in docs/canonical-vehicle.md",
        "fields.vin.xpth: unknown key (did you mean xpath?)",
    ]


def test_an_xpath_syntax_error_names_the_field_the_expression_and_the_fix(tmp_path):
    assert refusal(tmp_path, xml_profile({"vin": {"xpath": "@@Vin"}})) == [
        "fields.vin.xpath: '@@Vin' is not a valid XPath 1.0 expression (Invalid expression); an attribute is written @Vin, a child element Vin, see docs/onboarding.md"
    ]


def test_an_undeclared_namespace_prefix_names_the_prefix_and_the_declared_ones(tmp_path):
    assert refusal(tmp_path, xml_profile({"make": {"xpath": "x:Make"}})) == [
        "fields.make.xpath: 'x:Make' is not a valid XPath 1.0 expression here (Undefined namespace prefix: x); declare x under xml.namespaces (declared: inv)"
        " or write the name without a prefix, see docs/onboarding.md"
    ]


def test_each_of_several_xpaths_is_checked_and_named_by_its_position(tmp_path):
    problems = refusal(tmp_path, xml_profile({"colour": {"xpath": ["@Colour", "@Paint["]}}))
    assert len(problems) == 1 and problems[0].startswith("fields.colour.xpath[1]: '@Paint[' is not a valid XPath 1.0 expression")


def test_an_unknown_function_and_an_undeclared_record_prefix(tmp_path):
    raw = xml_profile({"make": {"xpath": "proper-case(@Make)"}})
    raw["xml"]["record"] = "v:Vehicle"
    problems = refusal(tmp_path, raw)
    assert "xml.record: 'v:Vehicle' uses the prefix 'v', which xml.namespaces does not declare; declare it there (prefix: namespace URI)" in problems
    assert any(p.startswith("fields.make.xpath: 'proper-case(@Make)' is not a valid XPath 1.0 expression (Unregistered function)") for p in problems)


def test_regular_expressions_are_compiled_at_load_time(tmp_path):
    problems = refusal(tmp_path, csv_profile({"engine_size_cc": {"column": "Engine", "extract": "([0-9.]+", "type": "integer"}}))
    assert problems == [
        "fields.engine_size_cc.extract: '([0-9.]+' is not a valid regular expression (missing ), unterminated subpattern at position 0); Python re syntax, e.g. '([0-9.]+)' for the number in '2.0L'"
    ]


def test_unknown_conversions_and_cases_suggest_the_known_ones(tmp_path):
    problems = refusal(tmp_path, csv_profile({"mileage": {"column": "Km", "type": "integer", "convert": "km_to_mile"}, "make": {"column": "Make", "case": "titel"}}))
    assert "fields.mileage.convert: 'km_to_mile' is not one of litres_to_cc, km_to_miles, miles_to_km (did you mean km_to_miles?)" in problems
    assert "fields.make.case: 'titel' is not one of upper, lower, title (did you mean title?)" in problems


def test_unmapped_and_map_default_must_agree(tmp_path):
    problems = refusal(
        tmp_path,
        csv_profile(
            {
                "fuel_type": {"column": "Fuel", "map": {"P": "petrol"}, "map_default": "other"},
                "body_type": {"column": "Body", "map": {"H": "hatchback"}, "unmapped": "default"},
                "colour": {"column": "Colour", "unmapped": "keep"},
                "transmission": {"column": "Box", "map": {"A": "automatic"}, "unmapped": "default", "map_default": "auto"},
            }
        ),
    )
    assert problems == [
        "fields.fuel_type.map_default: only with unmapped: default (unmapped is error); add unmapped: default or remove map_default",
        "fields.body_type.unmapped: default needs map_default: <the canonical value for a value the map does not cover>",
        "fields.colour.unmapped: keep is only for a field with a map; add a map or remove unmapped",
        "fields.transmission.map_default: 'auto' is not a transmission value (did you mean automatic?); the values are manual, automatic",
    ]


def test_convert_needs_a_number(tmp_path):
    assert refusal(tmp_path, csv_profile({"colour": {"column": "Colour", "convert": "km_to_miles"}})) == [
        "fields.colour.convert: km_to_miles converts numbers; it needs type integer or decimal (type is string)"
    ]


def test_a_skip_rule_needs_one_source_one_test_and_a_reason(tmp_path):
    problems = refusal(tmp_path, xml_profile({}, skip=[{"xpath": "@Usage", "column": "Usage", "in": ["Company"], "matches": "(", "reason": "company car"}, {"xpath": "@Usage", "reason": " "}]))
    assert problems == [
        "skip[0]: needs exactly one source, 'xpath' in an XML profile (it has column and xpath)",
        "skip[0]: needs exactly one test: in: [values], matches: <regular expression> or empty: true|false (it has in and matches)",
        "skip[0].matches: '(' is not a valid regular expression (missing ), unterminated subpattern at position 0); Python re syntax, e.g. '^(Company|Trade)$'",
        "skip[1]: needs exactly one test: in: [values], matches: <regular expression> or empty: true|false (it has none)",
        "skip[1].reason: empty; say why such records are not stock, e.g. 'company vehicle, not for sale'",
    ]
    assert refusal(tmp_path, csv_profile({}, skip=[{"column": "Usage", "in": ["Company"]}])) == [
        "skip[0].reason: missing; say why such records are not stock, e.g. reason: company vehicle, not for sale"
    ]


def test_sources_of_the_wrong_format_and_bad_names(tmp_path):
    problems = refusal(tmp_path, csv_profile({"make": {"xpath": "@Make"}, "model": {"column": ["Model", 5]}}))
    assert problems == ["fields.model.column[1]: should be text (quote it in the YAML: '...')"]
    assert refusal(tmp_path, csv_profile({"make": {"xpath": "@Make"}})) == ["fields.make: needs 'column' in a CSV profile (it has 'xpath', which is for XML profiles)"]
    assert refusal(tmp_path, xml_profile({}, ignored_columns=["@Location", "Notes[1]"])) == [
        "ignored_columns[1]: 'Notes[1]' is not a name; write an attribute @Name and an element Name, relative to the record (a nested one as Parent/Child/@Name)"
    ]


def test_not_a_mapping_at_all(tmp_path):
    assert refusal(tmp_path, "- just\n- a list\n") == ["(top level): must be a mapping of keys (name, format, files, fields, ...), got list"]


def test_a_missing_profile_suggests_the_nearest_name():
    with pytest.raises(ProfileError, match=r"mapping profile 'navigator_cvs' not found in .*\(did you mean navigator_csv\?\)"):
        find_profile("navigator_cvs", [BUILTIN_PROFILES])


def test_a_profile_is_parsed_once_per_version_of_its_file(tmp_path):
    path = tmp_path / "acme.yaml"
    path.write_text(yaml.safe_dump(csv_profile({})), encoding="utf-8")
    first = load_profile(path)
    assert load_profile(path) is first
    path.write_text(yaml.safe_dump(csv_profile({"make": {"column": "Make"}})), encoding="utf-8")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert "make" in load_profile(path).fields


@pytest.mark.parametrize("name", ["navigator_csv", "pipe_cp1252_csv", "star5_xml"])
def test_the_built_in_profiles_pass_every_check(name):
    profile = find_profile(name, [BUILTIN_PROFILES])
    assert profile.skip == [] and all(m.unmapped == "error" and m.convert is None and m.extract is None for m in profile.fields.values())
