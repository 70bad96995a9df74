"""The one way untrusted XML is parsed: no entities, no DTDs, no network, no huge trees."""

import re
from pathlib import Path

from lxml import etree

PROLOG_LIMIT = 1 << 20
ROOT_START = re.compile(rb"<[A-Za-z_]")
DANGEROUS = re.compile(rb"<!DOCTYPE|<!ENTITY", re.IGNORECASE)


class UnsafeXmlError(ValueError):
    """The document declares a DOCTYPE or entities, which exports never need; refused before parsing."""


def check_prolog(path: Path) -> None:
    with path.open("rb") as handle:
        head = handle.read(PROLOG_LIMIT)
    root = ROOT_START.search(head)
    prolog = head[: root.start()] if root else head
    if DANGEROUS.search(prolog):
        raise UnsafeXmlError("declares a DOCTYPE or entities; refused (DMS exports never need them, attacks do)")
    if root is None and len(head) == PROLOG_LIMIT:
        raise UnsafeXmlError(f"no root element within the first {PROLOG_LIMIT} bytes; refused")


def iter_records(path: Path, tag: str):
    """Yield each element named `tag` ({namespace}local) as it completes, after the prolog check."""
    check_prolog(path)
    return etree.iterparse(
        str(path),
        events=("end",),
        tag=tag,
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
