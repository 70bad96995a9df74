"""The XML engine does what the CSV engine does: drift is reported, ignored names and optional fields work, a misspelt name fails clearly."""

from pathlib import Path

import pytest

from dms_pipelines.formats import reader
from dms_pipelines.formats.profile import MappingProfile, load_profile
from dms_pipelines.formats.reader import read_export
from dms_pipelines.formats.values import MappingError
from dms_pipelines.formats.xml_names import read_names, xpath_steps

DATA = Path(__file__).parent / "data"
FIXTURE = (DATA / "foreign_attr_inventory.xml").read_text(encoding="utf-8")
PROFILE = load_profile(DATA / "foreign_attr_xml.yaml")
NAME = "stock_full_20261121_0200.xml"


def write(tmp_path: Path, text: str = FIXTURE) -> Path:
    path = tmp_path / NAME
    path.write_text(text, encoding="utf-8")
    return path


def variant(fields: dict | None = None, **changes) -> MappingProfile:
    """The fixture's profile with some fields replaced (None removes one) and other keys changed."""
    raw = PROFILE.model_dump(by_alias=True, exclude_defaults=True)
    for name, mapping in (fields or {}).items():
        if mapping is None:
            raw["fields"].pop(name)
        else:
            raw["fields"][name] = mapping
    return MappingProfile.model_validate({**raw, **changes})


def test_attributes_and_elements_no_field_reads_are_drift(tmp_path):
    text = FIXTURE.replace('Location="Yard B"', 'Location="Yard B" Colour2="Red"', 1).replace("<Description>", "<Notes>key with sales</Notes><Description>", 1)
    result = read_export(write(tmp_path, text), PROFILE, "leeds")
    assert result.unread_sources == ["c:Notes", "@Colour2"]  # in the order first seen: Notes is in the first record, Colour2 in the second
    assert result.warnings == [f"{NAME}: attributes/elements not in profile 'foreign_attr_xml' (ignored): ['c:Notes', '@Colour2']"]
    assert len(result.rows) == 26  # drift is reported, never fatal


def test_ignored_names_silence_drift_whatever_their_prefix(tmp_path):
    text = FIXTURE.replace('Location="Yard B"', 'Location="Yard B" Colour2="Red"', 1).replace("<Description>", "<Notes><Line>key with sales</Line></Notes><Description>", 1)
    ignoring = variant(ignored_columns=[*PROFILE.ignored_columns, "@Colour2", "Notes"])  # an element covers what is inside it
    result = read_export(write(tmp_path, text), ignoring, "leeds")
    assert result.warnings == [] and result.unread_sources == []
    unignored = read_export(write(tmp_path, text), variant(ignored_columns=[]), "leeds")
    assert unignored.unread_sources == ["@Location", "c:Notes/c:Line", "inv:Images/inv:Image/@Position", "@Colour2"]


def test_drift_is_looked_for_in_a_bounded_sample_of_records(tmp_path, monkeypatch):
    monkeypatch.setattr(reader, "SAMPLE_RECORDS", 2)

    def with_attribute(record: int, attribute: str) -> str:
        head, *vehicles = FIXTURE.split("<inv:Vehicle ")
        vehicles[record] = f'{attribute}="x" ' + vehicles[record]
        return "<inv:Vehicle ".join([head, *vehicles])

    assert read_export(write(tmp_path, with_attribute(1, "Early")), PROFILE, "leeds").unread_sources == ["@Early"]
    assert read_export(write(tmp_path, with_attribute(2, "Late")), PROFILE, "leeds").unread_sources == []  # the third record is past the sample


def test_a_misspelt_attribute_of_a_required_field_fails_the_file_with_the_right_name(tmp_path):
    with pytest.raises(MappingError) as refused:
        read_export(write(tmp_path), variant({"make": {"xpath": "@Mkae", "case": "title"}}), "leeds")
    assert str(refused.value) == (
        f"{NAME}: fields.make.xpath '@Mkae' of profile 'foreign_attr_xml' matches nothing in any of the 30 records read (make is required, so no record could be used); did you mean @Make?"
    )


def test_a_delta_missing_a_required_field_is_read_so_that_its_sales_still_apply(tmp_path):
    """Deltas may carry only what changed; the rows are quarantined by the row rules, but a "sold" among them applies."""
    sold = '<inv:Inventory xmlns:inv="urn:example:dealerstock:2"><inv:Vehicle StockNo="HX1002" Status="SOLD" Usage="Retail"/></inv:Inventory>'
    path = tmp_path / "leeds_inventory_delta.xml"
    path.write_text(sold, encoding="utf-8")
    assert PROFILE.export_kind(path.name) == "delta"
    result = read_export(path, PROFILE, "leeds")
    assert result.rows[["stock_id", "status"]].values.tolist() == [["HX1002", "sold"]]
    assert any(w.startswith(f"{path.name}: fields.make.xpath '@Make' of profile 'foreign_attr_xml' matches nothing in any of the 1 records of this delta (make is required)") for w in result.warnings)
    with pytest.raises(MappingError, match="fields.make.xpath '@Make'"):
        read_export(path.rename(tmp_path / "leeds_inventory.xml"), PROFILE, "leeds")  # the same records as a full export


def test_every_required_field_that_matches_nothing_is_named(tmp_path):
    with pytest.raises(MappingError) as refused:
        read_export(write(tmp_path), variant({"make": {"xpath": "@Mkae"}, "price": {"xpath": "Price", "type": "money"}}), "leeds")
    lines = str(refused.value).splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{NAME}: fields.make.xpath '@Mkae'") and lines[1].startswith("  fields.price.xpath 'Price'")
    assert lines[1].endswith("did you mean @Price?")  # an element where the layout has an attribute


def test_a_required_field_with_a_default_or_marked_optional_does_not_fail_the_file(tmp_path):
    ignoring = [*PROFILE.ignored_columns, "@Condition"]
    defaulted = read_export(write(tmp_path), variant({"condition": {"xpath": "@State", "default": "used"}}, ignored_columns=ignoring), "leeds")
    assert set(defaulted.rows["condition"]) == {"used"}
    assert defaulted.warnings == [
        f"{NAME}: fields.condition.xpath '@State' of profile 'foreign_attr_xml' matches nothing in any of the 30 records; did you mean @Status? (optional: true if the layout may leave it out)"
    ]
    optional = read_export(write(tmp_path), variant({"condition": {"xpath": "@State", "optional": True}}, ignored_columns=ignoring), "leeds")
    assert optional.rows["condition"].isna().all() and optional.warnings == []  # the row rules quarantine them, as for a CSV


def test_an_optional_field_may_match_nothing_and_another_is_a_warning(tmp_path):
    text = FIXTURE.replace(' MOTDue="', ' Due="')
    result = read_export(write(tmp_path, text), variant(ignored_columns=[*PROFILE.ignored_columns, "@Due"]), "leeds")
    assert result.warnings == []  # mot_expiry is optional in the profile
    warned = read_export(write(tmp_path, text), variant({"mot_expiry": {"xpath": "@MOTDue", "type": "date", "formats": ["%Y-%m-%d"]}}, ignored_columns=[*PROFILE.ignored_columns, "@Due"]), "leeds")
    assert warned.warnings == [f"{NAME}: fields.mot_expiry.xpath '@MOTDue' of profile 'foreign_attr_xml' matches nothing in any of the 30 records (optional: true if the layout may leave it out)"]


def test_an_element_present_but_always_empty_matches(tmp_path):
    text = FIXTURE.replace("<Description>", "<Warranty/><Description>")
    result = read_export(write(tmp_path, text), variant({"euro_standard": {"xpath": "c:Warranty"}}), "leeds")
    assert result.warnings == [] and result.rows["euro_standard"].isna().all()


def test_a_name_in_the_default_namespace_needs_the_profiles_prefix(tmp_path):
    result = read_export(write(tmp_path), variant({"features": {"xpath": "Equipment/Item", "type": "list", "separator": "|"}}), "leeds")
    [warning] = result.warnings
    assert "fields.features.xpath 'Equipment/Item'" in warning and "did you mean c:Equipment or c:Item?" in warning
    raw = PROFILE.model_dump(by_alias=True, exclude_defaults=True)
    raw["xml"]["namespaces"].pop("c")
    raw["fields"] = {name: mapping for name, mapping in raw["fields"].items() if not str(mapping["xpath"]).startswith("c:")}
    undeclared = read_export(write(tmp_path), MappingProfile.model_validate({**raw, "fields": {**raw["fields"], "description": {"xpath": "Description"}}}), "leeds")
    assert any(
        "fields.description.xpath 'Description'" in w and "Description in namespace urn:example:dealerstock:content:1 (declare a prefix for it under xml.namespaces" in w for w in undeclared.warnings
    )


def test_a_skip_rule_that_matches_nothing_is_a_warning(tmp_path):
    result = read_export(write(tmp_path), variant(skip=[{"xpath": "@Usgae", "in": ["Company"], "reason": "company vehicle, not for sale"}]), "leeds")
    assert len(result.rows) == 30 and result.skipped == {}
    assert f"{NAME}: skip[0].xpath '@Usgae' of profile 'foreign_attr_xml' matches nothing in any of the 30 records; did you mean @Usage?" in result.warnings


def test_a_wrong_record_element_names_the_elements_the_file_has(tmp_path):
    raw = PROFILE.model_dump(by_alias=True, exclude_defaults=True)
    raw["xml"]["record"] = "inv:Vehicles"
    with pytest.raises(MappingError) as refused:
        read_export(write(tmp_path), MappingProfile.model_validate(raw), "leeds")
    message = str(refused.value)
    assert message.startswith(f"{NAME}: no <inv:Vehicles> records found (namespace urn:example:dealerstock:2); wrong layout or namespace?")
    assert "Below its root <inv:Inventory> the file has <inv:Vehicle> x30 (depth 1), " in message
    assert message.endswith("; did you mean <inv:Vehicle>?")


def test_a_record_element_in_another_namespace_says_so(tmp_path):
    with pytest.raises(MappingError) as refused:
        read_export(write(tmp_path, FIXTURE.replace("urn:example:dealerstock:2", "urn:example:dealerstock:3")), PROFILE, "leeds")
    message = str(refused.value)
    assert "names in namespace urn:example:dealerstock:3, which the profile does not declare, are shown without a prefix" in message
    assert message.endswith("<Vehicle> is there in namespace urn:example:dealerstock:3, the profile expects urn:example:dealerstock:2 (another version of the layout?)")


def test_a_file_with_only_a_root(tmp_path):
    with pytest.raises(MappingError, match=r"no <inv:Vehicle> records found .* The file's root is <Stock>, with no elements inside\.$"):
        read_export(write(tmp_path, "<Stock/>"), PROFILE, "leeds")


@pytest.mark.parametrize(
    ("expression", "names"),
    [
        ("@Make", {"@Make"}),
        ("s:Vehicle/s:Pricing/s:Price[s:PriceCode='Previous Make']/s:ChargeAmount", {"Vehicle", "Pricing", "Price", "PriceCode", "ChargeAmount"}),
        ("normalize-space(concat(@First, ' ', inv:Name/text()))", {"@First", "Name"}),
        ("attribute::Vin | child::inv:Notes", {"@Vin", "Notes"}),
        ("@*", {"@*"}),
        ("inv:Images/*[1]/@Url", {"Images", "*", "@Url"}),
        ('count($records) > 0 and @Odometer[../@OdometerUnit="km"]', {"@Odometer", "@OdometerUnit", "and"}),
    ],
)
def test_the_names_an_xpath_reads(expression, names):
    assert read_names([expression]) == names


def test_a_name_step_keeps_its_prefix_for_suggestions():
    assert [(step.prefix, step.local, step.attribute) for step in xpath_steps("inv:Images/inv:Image/@Url")] == [("inv", "Images", False), ("inv", "Image", False), (None, "Url", True)]
