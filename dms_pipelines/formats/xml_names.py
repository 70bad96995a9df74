"""XML names: which attributes and elements a profile's XPaths read, which ones sampled records hold, and the nearest to a misspelt one."""

import difflib
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from dms_pipelines.formats.safe_xml import UnsafeXmlError, iter_events

TOKENS = re.compile(
    r"""(?P<literal>'[^']*'|"[^"]*")
    |(?P<axis>[A-Za-z][\w.-]*)\s*::
    |(?P<variable>\$[\w.:-]+)
    |(?P<at>@)
    |(?P<name>(?:(?P<prefix>[A-Za-z_][\w.-]*):)?(?P<local>[A-Za-z_][\w.-]*|\*)|\*)(?P<call>\s*\()?""",
    re.VERBOSE,
)
CLOSE_NAMES = 0.75  # difflib's ratio for a suggested name: @Mkae -> @Make, not TrimCode -> PriceCode
SCAN_DEPTH = 4  # how deep below the root a file's elements are counted when no record is found
SCAN_EVENTS = 200_000  # and how many elements at most: it is an error path, not a second full read


@dataclass(frozen=True)
class NameStep:
    prefix: str | None
    local: str  # "*" for a wildcard
    attribute: bool

    @property
    def key(self) -> str:
        return ("@" if self.attribute else "") + self.local


def xpath_steps(expression: str) -> list[NameStep]:
    """The name steps of an XPath expression: element and attribute names and wildcards, not functions, node tests,
    axes, variables or string literals. `*` as multiplication counts as a wildcard (the heuristic errs towards read)."""
    steps, attribute = [], False
    for token in TOKENS.finditer(expression):
        if token.group("at"):
            attribute = True
        elif token.group("axis"):
            attribute = token.group("axis") == "attribute"
        elif token.group("name") and not token.group("call"):
            local = token.group("local") or "*"
            steps.append(NameStep(token.group("prefix"), local, attribute))
            attribute = False
        elif token.group("literal") or token.group("variable") or token.group("call"):
            attribute = False
    return steps


def read_names(expressions: list[str]) -> set[str]:
    """Every name the expressions read, by local name: "@Make", "MakeString", and "@*" or "*" for wildcards.

    "Read" is a heuristic over the names in each expression: a node of a record is read when its own name appears as a
    name step in any field's or skip rule's XPath (an attribute as @Name, an element as Name, namespaces aside), or a
    wildcard covers it (@* every attribute, * every element). A name read in one place counts everywhere, so drift of
    an already-read name can go unreported; a node that is read is never reported.
    """
    return {step.key for expression in expressions for step in xpath_steps(expression)}


@dataclass
class RecordNames:
    """What a sample of records holds: each data node (an attribute, or an element with text of its own or none at all)
    by its path relative to the record, and every attribute and element name seen, container elements included."""

    prefixes: dict[str, str]  # namespace URI -> the profile's prefix for it
    nodes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # shown path -> local path ("inv:Images/inv:Image/@Url" -> ("Images", "Image", "@Url"))
    names: dict[tuple[str | None, str], str] = field(default_factory=dict)  # (namespace, "@local" or "local") -> shown name

    @classmethod
    def of(cls, records: list, namespaces: dict[str, str]) -> "RecordNames":
        found = cls({uri: prefix for prefix, uri in reversed(list(namespaces.items()))})
        known: dict[tuple[str, bool], tuple[str, str]] = {}  # (tag, attribute) -> (shown, local key): a record repeats its names
        for record in records:
            found._walk(record, "", (), known)
        return found

    def shown(self, tag: str, attribute: bool = False) -> str:
        namespace, local = split_tag(tag)
        prefix = self.prefixes.get(namespace) if namespace else None
        return ("@" if attribute else "") + (f"{prefix}:{local}" if prefix else local)

    def _name(self, tag: str, attribute: bool, known: dict) -> tuple[str, str]:
        named = known.get((tag, attribute))
        if named is None:
            namespace, local = split_tag(tag)
            named = known[(tag, attribute)] = (self.shown(tag, attribute), ("@" if attribute else "") + local)
            self.names.setdefault((namespace, named[1]), named[0])
        return named

    def _walk(self, element, shown_path: str, local_path: tuple[str, ...], known: dict) -> None:
        nodes = self.nodes
        for name in element.attrib:
            shown, key = self._name(name, True, known)
            path = shown_path + shown
            if path not in nodes:
                nodes[path] = (*local_path, key)
        for child in element:
            tag = child.tag
            if not isinstance(tag, str):
                continue
            shown, key = self._name(tag, False, known)
            child_shown, child_local = shown_path + shown, (*local_path, key)
            if child_shown not in nodes and ((child.text and child.text.strip()) or (len(child) == 0 and not child.attrib)):
                nodes[child_shown] = child_local
            self._walk(child, child_shown + "/", child_local, known)

    def unread(self, expressions: list[str], ignored: list[str]) -> list[str]:
        """The data nodes no expression reads and no ignored entry covers, in the order first seen."""
        names = read_names(expressions)
        ignored_paths = [tuple(step.rpartition(":")[2] if not step.startswith("@") else "@" + step[1:].rpartition(":")[2] for step in entry.split("/")) for entry in ignored]

        def covered(path: tuple[str, ...]) -> bool:
            last = path[-1]
            if last in names or ("@*" in names and last.startswith("@")) or ("*" in names and not last.startswith("@")):
                return True
            return any(path[: len(entry)] == entry for entry in ignored_paths)

        return [shown for shown, path in self.nodes.items() if not covered(path)]

    def nearest(self, expression: str, namespaces: dict[str, str]) -> list[str]:
        """For an expression that matched nothing: for each of its names the records do not hold (in the namespace the
        profile gives it), the closest names they do hold, with where a name of another namespace lives."""
        hints = []
        for step in xpath_steps(expression):
            if step.local == "*":
                continue
            namespace = namespaces.get(step.prefix) if step.prefix else None
            if (namespace, step.key) in self.names:
                continue
            elsewhere = [shown for (other, key), shown in self.names.items() if key == step.key]
            if elsewhere:
                for (other, key), shown in self.names.items():
                    if key == step.key:
                        declared = other is None or other in self.prefixes
                        hints.append(shown if declared else f"{shown} in namespace {other} (declare a prefix for it under xml.namespaces and write prefix:{step.local})")
                continue
            other_kind = step.key.removeprefix("@") if step.attribute else "@" + step.key
            switched = [shown for (_, key), shown in self.names.items() if key == other_kind]
            if switched:  # Price written for the attribute @Price, or the other way round
                hints += switched
                continue
            same_kind = {key: shown for (_, key), shown in self.names.items() if key.startswith("@") == step.attribute}
            hints += [same_kind[key] for key in difflib.get_close_matches(step.key, list(same_kind), n=2, cutoff=CLOSE_NAMES)]
        return list(dict.fromkeys(hints))

    def listing(self, limit: int = 15) -> str:
        shown = list(dict.fromkeys(self.names.values()))
        return ", ".join(shown[:limit]) + (f", ... ({len(shown)} names)" if len(shown) > limit else "")


def split_tag(tag: str) -> tuple[str | None, str]:
    """'{uri}local' -> (uri, local); 'local' -> (None, local)."""
    if tag.startswith("{"):
        namespace, _, local = tag[1:].partition("}")
        return namespace, local
    return None, tag


def elements_present(path: Path) -> tuple[str | None, Counter]:
    """The root's tag, and how many elements of each tag lie at each depth below it (up to SCAN_DEPTH, over at most
    SCAN_EVENTS elements): what a file has where the profile's record element was expected."""
    root, depth, counts, seen = None, -1, Counter(), 0
    try:
        for event, element in iter_events(path, ("start", "end")):
            if event == "end":
                depth -= 1
                element.clear(keep_tail=False)
                continue
            depth += 1
            seen += 1
            if depth == 0:
                root = element.tag
            elif depth <= SCAN_DEPTH and isinstance(element.tag, str):
                counts[(depth, element.tag)] += 1
            if seen >= SCAN_EVENTS:
                break
    except (etree.XMLSyntaxError, UnsafeXmlError):
        pass  # what was counted before the fault still helps
    return root, counts


def describe_elements(path: Path, record_tag: str, namespaces: dict[str, str]) -> str:
    """A sentence naming the elements a file has below its root, shallowest and most repeated first, and the nearest to `record_tag`."""
    root, counts = elements_present(path)
    if root is None:
        return ""
    prefixes = {uri: prefix for prefix, uri in reversed(list(namespaces.items()))}

    def shown(tag: str) -> str:
        namespace, local = split_tag(tag)
        return f"{prefixes[namespace]}:{local}" if namespace in prefixes else local

    undeclared = sorted({namespace for tag in [root, *(tag for _, tag in counts)] if (namespace := split_tag(tag)[0]) and namespace not in prefixes})
    note = f" (names in namespace {', '.join(undeclared)}, which the profile does not declare, are shown without a prefix)" if undeclared else ""
    if not counts:
        return f" The file's root is <{shown(root)}>, with no elements inside{note}."
    ranked = sorted(counts.items(), key=lambda item: (item[0][0], -item[1]))  # shallowest first: a record is near the root
    listed = ", ".join(f"<{shown(tag)}> x{count} (depth {depth})" for (depth, tag), count in ranked[:8])
    wanted_namespace, wanted_local = split_tag(record_tag)
    by_local: dict[str, str] = {}
    for (_, tag), _count in ranked:
        by_local.setdefault(split_tag(tag)[1], tag)
    hint = ""
    if wanted_local in by_local:
        namespace = split_tag(by_local[wanted_local])[0]
        hint = f"; <{wanted_local}> is there in namespace {namespace or 'none'}, the profile expects {wanted_namespace or 'none'} (another version of the layout?)"
    elif close := difflib.get_close_matches(wanted_local, list(by_local), n=1):
        hint = f"; did you mean <{shown(by_local[close[0]])}>?"
    return f" Below its root <{shown(root)}> the file has {listed}{note}{hint}"
