"""Configuration: the committed file loads, and every kind of mistake is reported with its key and problem."""

import pytest
import yaml

from dms_pipelines.config import ConfigError, Market, load_settings, operations_db_url, parse_settings
from dms_pipelines.paths import CONFIG_ENV, DATA_ENV, DataPaths, config_path, data_root
from dms_pipelines_tests.support import COMMITTED_CONFIG


@pytest.fixture
def raw() -> dict:
    return yaml.safe_load(COMMITTED_CONFIG.read_text())


def errors_of(raw: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_settings(raw, "test.yaml")
    return str(caught.value)


def test_committed_configuration_loads_three_dealers_on_three_layouts():
    settings = load_settings(COMMITTED_CONFIG)
    assert [d.id for d in settings.dealers] == ["leeds", "york", "sheffield"]
    assert {d.profile for d in settings.dealers} == {"navigator_csv", "star5_xml", "pipe_cp1252_csv"}
    assert settings.dealer("leeds").marketplaces["google"].setting("store_code") == "AVM-LEEDS"


def test_unknown_key_is_named_with_its_path(raw):
    raw["dealers"][1]["sorce"] = {}
    message = errors_of(raw)
    assert "dealers[1].sorce: unknown key" in message


def test_missing_required_key_is_named(raw):
    del raw["dealers"][0]["address"]["postcode"]
    assert "dealers[0].address.postcode: Field required" in errors_of(raw)


def test_secret_written_in_an_env_key_is_refused_without_echoing_it(raw):
    raw["dealers"][0]["source"] = {
        "kind": "sftp",
        "host": "sftp.example",
        "username": "dms",
        "known_hosts": "known_hosts",
        "private_key_env": "-----BEGIN OPENSSH PRIVATE KEY----- abc",
    }
    message = errors_of(raw)
    assert "dealers[0].source.private_key_env" in message
    assert "NAME of an environment variable" in message
    assert "BEGIN OPENSSH" not in message


def test_sftp_source_without_credentials_is_refused(raw):
    raw["dealers"][0]["source"] = {"kind": "sftp", "host": "h", "username": "u", "known_hosts": "k"}
    assert "needs one of private_key_path, private_key_env or password_env" in errors_of(raw)


def test_marketplace_used_by_a_dealer_must_be_declared(raw):
    del raw["marketplaces"]["carsnip"]
    assert "dealers[0].marketplaces.carsnip: not declared" in errors_of(raw)


def test_bad_dealer_id(raw):
    raw["dealers"][0]["id"] = "Leeds Central"
    assert "dealers[0].id: must be lower-case" in errors_of(raw)


def test_duplicate_dealer_ids(raw):
    raw["dealers"][1]["id"] = "leeds"
    assert "'leeds' is used by two dealers" in errors_of(raw)


def test_missing_file_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_settings(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("dealers: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(broken)


def test_environment_chooses_config_and_data_root(tmp_path):
    env = {DATA_ENV: str(tmp_path / "d")}
    assert data_root(env) == (tmp_path / "d").resolve()
    assert config_path(env) == (tmp_path / "d" / "config" / "dms_pipelines.yaml").resolve()
    env[CONFIG_ENV] = str(tmp_path / "other.yaml")
    assert config_path(env) == (tmp_path / "other.yaml").resolve()


def test_operations_database_url_from_a_named_variable(raw, tmp_path):
    raw["operations_db_url_env"] = "DMS_OPS_DB"
    settings = parse_settings(raw)
    with pytest.raises(ConfigError, match="DMS_OPS_DB is not set"):
        operations_db_url(settings, DataPaths(tmp_path), environ={})
    assert operations_db_url(settings, DataPaths(tmp_path), environ={"DMS_OPS_DB": "postgresql://x/y"}) == "postgresql://x/y"


def test_api_base_url_from_a_named_variable(raw):
    destination = raw["marketplaces"]["autotrader"]["destination"]
    assert destination["base_url_env"] == "DMS_AUTOTRADER_BASE_URL"  # the committed demo configuration names it
    api = parse_settings(raw).marketplaces["autotrader"].destination
    assert api.resolved_base_url(environ={}) == destination["base_url"]  # unset: base_url
    assert api.resolved_base_url(environ={"DMS_AUTOTRADER_BASE_URL": ""}) == destination["base_url"]  # empty counts as unset
    assert api.resolved_base_url(environ={"DMS_AUTOTRADER_BASE_URL": "https://api.example/v1/"}) == "https://api.example/v1/"
    for bad in ("api.example", "ftp://api.example", "http://", "https://api.example/?x=1"):
        with pytest.raises(ConfigError, match="DMS_AUTOTRADER_BASE_URL") as caught:
            api.resolved_base_url(environ={"DMS_AUTOTRADER_BASE_URL": bad})
        assert "http(s) URL" in str(caught.value)
    with pytest.raises(ConfigError, match="DMS_AUTOTRADER_BASE_URL") as caught:
        api.resolved_base_url(environ={"DMS_AUTOTRADER_BASE_URL": "https://user:s3cret@api.example"})
    assert "s3cret" not in str(caught.value)


def test_api_base_url_env_must_name_a_variable(raw):
    raw["marketplaces"]["autotrader"]["destination"]["base_url_env"] = "http://127.0.0.1:8765"
    assert "marketplaces.autotrader.destination.base_url_env: must be the NAME of an environment variable" in errors_of(raw)
    del raw["marketplaces"]["autotrader"]["destination"]["base_url_env"]
    api = parse_settings(raw).marketplaces["autotrader"].destination
    assert api.base_url_env is None
    assert api.resolved_base_url(environ={"DMS_AUTOTRADER_BASE_URL": "https://elsewhere.example"}) == "http://127.0.0.1:8765"


# --- a dealer's market, validation overrides and vehicle URLs -------------------------------------------------------------


def test_a_dealer_sells_in_the_uk_by_default(raw):
    settings = parse_settings(raw)
    for dealer in settings.dealers:
        assert dealer.market == Market(country="GB", currency="GBP", distance_unit="miles", plates=["GB"], registration_required=["used", "demo"])
        assert settings.rules_for(dealer.id) == settings.validation
        assert dealer.urls.template("new") == dealer.urls.template("used") == "{website}/used-cars/{stock_id_lower}"
    assert settings.market_for(None) == Market() and settings.rules_for(None) is settings.validation


def test_an_irish_market_brings_its_own_defaults_and_each_can_be_set(raw):
    raw["dealers"][0]["market"] = {"country": "IE"}
    raw["dealers"][1]["market"] = {"country": "IE", "currency": "GBP", "distance_unit": "miles", "plates": ["IE", "GB", "IE"], "registration_required": []}
    settings = parse_settings(raw)
    irish, border = settings.dealer("leeds").market, settings.dealer("york").market
    assert (irish.currency, irish.distance_unit, irish.plates, irish.registration_required) == ("EUR", "km", ("IE",), ("used", "demo"))
    assert (border.currency, border.distance_unit, border.plates, border.registration_required) == ("GBP", "miles", ("IE", "GB"), ())


def test_an_irish_address_makes_an_irish_market_unless_the_market_says_otherwise(raw):
    raw["dealers"][0]["address"] = {"street": "1 Naas Road", "city": "Dublin", "postcode": "D12 X285", "country": "IE"}
    raw["dealers"][1]["address"] = dict(raw["dealers"][0]["address"])
    raw["dealers"][1]["market"] = {"country": "GB"}
    settings = parse_settings(raw)
    assert settings.dealer("leeds").market.currency == "EUR" and settings.dealer("york").market.currency == "GBP"
    assert settings.dealer("leeds").address.one_line() == "1 Naas Road, Dublin, D12 X285, Ireland"
    assert settings.dealer("sheffield").address.one_line().endswith(", S6 3AE, United Kingdom")


@pytest.mark.parametrize(
    "market, expected",
    [
        ({"country": "UK"}, "dealers[0].market.country: 'UK' is not a known country; allowed: GB, IE (ISO 3166 codes: the United Kingdom is GB)"),
        ({"currency": "USD"}, "dealers[0].market.currency: 'USD' is not a known currency; allowed: GBP, EUR"),
        ({"currency": "eur"}, "dealers[0].market.currency: 'eur' is not a known currency (did you mean EUR?)"),
        ({"distance_unit": "kilometres"}, "dealers[0].market.distance_unit: 'kilometres' is not a known distance unit"),
        ({"distance_unit": "mi"}, "allowed: miles, km"),
        ({"plates": ["IE", "NI"]}, "dealers[0].market.plates: 'NI' is not a known plate country; allowed: GB, IE"),
        ({"plates": []}, "dealers[0].market.plates: needs at least one country"),
        ({"registration_required": ["used", "ex-demo"]}, "dealers[0].market.registration_required: 'ex-demo' is not a known condition (did you mean demo?); allowed: new, used, demo"),
        ({"currancy": "EUR"}, "dealers[0].market.currancy: unknown key (did you mean currency?)"),
    ],
)
def test_a_market_mistake_is_named_with_the_allowed_values(raw, market, expected):
    raw["dealers"][0]["market"] = market
    assert expected in errors_of(raw)


def test_conditions_in_the_configuration_are_the_canonical_ones():
    from dms_pipelines.config import CONDITIONS
    from dms_pipelines.stock.schema import CONDITIONS as CANONICAL

    assert CONDITIONS == CANONICAL


def test_a_dealer_overrides_only_the_validation_keys_it_gives(raw):
    raw["validation"]["min_images"] = 8
    raw["dealers"][1]["validation"] = {"min_images": 3, "max_price": None, "max_mileage": 1_600_000}
    settings = parse_settings(raw)
    york = settings.rules_for("york")
    assert (york.min_images, york.max_price, york.max_mileage) == (3, None, 1_600_000)
    assert york.model_dump(exclude={"min_images", "max_price", "max_mileage"}) == settings.validation.model_dump(exclude={"min_images", "max_price", "max_mileage"})
    assert settings.rules_for("leeds").min_images == 8  # the group's value, for dealers that set none
    with pytest.raises(KeyError, match="no dealer 'hull'"):
        settings.rules_for("hull")


@pytest.mark.parametrize(
    "override, expected",
    [
        ({"min_images": -1}, "dealers[2].validation.min_images: Input should be greater than or equal to 0"),
        ({"guard_median_price_factor": 0.5}, "dealers[2].validation.guard_median_price_factor: a factor must be above 1"),
        ({"min_imgaes": 3}, "dealers[2].validation.min_imgaes: unknown key (did you mean min_images?)"),
        ({"freshness_hour": 3}, "dealers[2].validation.freshness_hour: unknown key (did you mean freshness_hours?)"),
    ],
)
def test_a_bad_validation_override_is_named_with_its_dealer_and_key(raw, override, expected):
    raw["dealers"][2]["validation"] = override
    assert expected in errors_of(raw)


def test_an_unknown_key_anywhere_gets_the_closest_known_one(raw):
    raw["validaton"] = raw.pop("validation")
    raw["dealers"][0]["source"]["stabilty_seconds"] = 5
    raw["marketplaces"]["autotrader"]["destination"]["tokn_env"] = "X"
    message = errors_of(raw)
    assert "  validaton: unknown key (did you mean validation?)" in message
    assert "dealers[0].source.stabilty_seconds: unknown key (did you mean stability_seconds?)" in message
    assert "marketplaces.autotrader.destination.tokn_env: unknown key (did you mean token_env?)" in message
    raw["dealers"][0]["password"] = "hunter2"
    message = errors_of(raw)
    assert "dealers[0].password: unknown key (misspelt? known here: id, name, address" in message and "secrets go in environment variables named by *_env keys" in message


def test_vehicle_urls_follow_the_dealers_templates(raw):
    raw["dealers"][0]["website"] = "https://www.airevalleymotors.example/leeds/"
    raw["dealers"][0]["urls"] = {"used": "{website}/used/{make}-{model}/{stock_id}", "new": "https://new.example/{dealer_id}/{stock_id_lower}"}
    raw["dealers"][1]["urls"] = {"used": "{website}/stock/{stock_id_lower}"}
    settings = parse_settings(raw)
    leeds, york, sheffield = settings.dealers
    assert leeds.vehicle_url("used", "A001", "Land Rover", "Range Rover Évoque") == "https://www.airevalleymotors.example/leeds/used/land-rover-range-rover-evoque/A001"
    assert leeds.vehicle_url("demo", "A001", "Mercedes-Benz", "C 300e") == "https://www.airevalleymotors.example/leeds/used/mercedes-benz-c-300e/A001"
    assert leeds.vehicle_url("new", "A001") == "https://new.example/leeds/a001"
    assert york.vehicle_url("new", "Y7") == york.vehicle_url("used", "Y7") == "https://www.airevalleymotors.example/york/stock/y7"  # new follows used
    assert sheffield.vehicle_url("new", "S1") == "https://www.airevalleymotors.example/sheffield/used-cars/s1"  # today's URL


@pytest.mark.parametrize(
    "urls, expected",
    [
        ({"new": "{website}/new-cars/{stock}"}, "dealers[0].urls.new: unknown placeholder {stock} (did you mean {stock_id}?); known: {website}, {dealer_id}, {stock_id}"),
        ({"used": "{website}/used-cars"}, "dealers[0].urls.used: '{website}/used-cars' must name the vehicle: include {stock_id} or {stock_id_lower}"),
        ({"used": "/used-cars/{stock_id}"}, "dealers[0].urls.used: '/used-cars/{stock_id}' must start with {website} or an http(s) address"),
        ({"used": "{website}/used-cars/{stock_id}}"}, "has an unmatched brace"),
        ({"used": "{website}/used cars/{stock_id}"}, "must not contain spaces"),
        ({"demo": "{website}/demo/{stock_id}"}, "dealers[0].urls.demo: unknown key (misspelt? known here: used, new;"),
    ],
)
def test_a_bad_url_template_is_named_with_its_key(raw, urls, expected):
    raw["dealers"][0]["urls"] = urls
    assert expected in errors_of(raw)
