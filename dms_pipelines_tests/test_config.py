"""Configuration: the committed file loads, and every kind of mistake is reported with its key and problem."""

import pytest
import yaml

from dms_pipelines.config import ConfigError, load_settings, operations_db_url, parse_settings
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
