"""Every hostile export either parses to canonical rows or fails with the engine's own error naming the file; nothing escapes."""

import pytest

from dms_pipelines.formats.profile import find_profile
from dms_pipelines.formats.reader import read_export
from dms_pipelines.formats.values import MappingError
from dms_pipelines.paths import BUILTIN_PROFILES
from dms_pipelines.sources.landing import safe_local_name
from dms_pipelines_tests.support import EITHER, HOSTILE_REMOTE_NAMES, NAVIGATOR_HEADER, PARSES, REFUSED, SECRET_FILE_MARKER, STATS, corpus, navigator_row

PROFILES = [BUILTIN_PROFILES]
CORPUS = corpus()


def test_the_corpus_is_big_enough():
    assert len(CORPUS) >= 40


@pytest.mark.parametrize("hostile", CORPUS, ids=[h.name for h in CORPUS])
def test_hostile_file(hostile, tmp_path):
    path = tmp_path / hostile.name
    path.write_bytes(hostile.content)
    profile = find_profile(hostile.profile, PROFILES)
    STATS["hostile inputs tried"] += 1
    try:
        result = read_export(path, profile, "leeds", max_uncompressed_bytes=32 << 20)
    except MappingError as error:
        assert hostile.expect in (REFUSED, EITHER), f"{hostile.name} was refused: {error}"
        assert hostile.name in str(error)
        return
    assert hostile.expect in (PARSES, EITHER), f"{hostile.name} parsed, expected a refusal"
    if hostile.rows is not None:
        assert len(result.rows) == hostile.rows, result.issues.to_dict(orient="records")
    assert len(result.rows) + result.issues.loc[result.issues["severity"] == "error", "source_row"].nunique() >= result.records_total - 0
    text = result.rows.astype("string").fillna("").to_csv()
    assert SECRET_FILE_MARKER not in text
    if not result.issues.empty:
        assert result.issues["message"].notna().all()


def test_the_same_rows_from_three_encodings(tmp_path):
    text = "\r\n".join([NAVIGATOR_HEADER, navigator_row("0001", description="Café £500 off – was €600")]) + "\r\n"
    profile = find_profile("navigator_csv", PROFILES)
    results = []
    for encoding, data in (("cp1252", text.encode("cp1252")), ("utf-8", text.encode("utf-8")), ("utf-8-sig", b"\xef\xbb\xbf" + text.encode())):
        (tmp_path / f"{encoding}.csv").write_bytes(data)
        result = read_export(tmp_path / f"{encoding}.csv", profile, "leeds")
        assert result.encoding == encoding
        results.append(result.rows.drop(columns="source_file"))
    assert results[0].equals(results[1]) and results[1].equals(results[2])
    assert results[0].loc[0, "description"] == "Café £500 off – was €600"


def test_billion_laughs_is_refused_before_any_expansion(tmp_path):
    laughs = next(h for h in CORPUS if h.name == "inventory_full_laughs.xml")
    (tmp_path / laughs.name).write_bytes(laughs.content)
    with pytest.raises(MappingError, match="DOCTYPE or entities"):
        read_export(tmp_path / laughs.name, find_profile("star5_xml", PROFILES), "york")


@pytest.mark.parametrize("remote_name", HOSTILE_REMOTE_NAMES)
def test_remote_names_cannot_escape_the_landing_folder(remote_name, tmp_path):
    STATS["hostile inputs tried"] += 1
    local = safe_local_name(remote_name)
    target = (tmp_path / local).resolve()
    assert target.parent == tmp_path.resolve() and not local.startswith(".") and "/" not in local and len(local) <= 200
