"""The difference between what a marketplace should show and what it last acknowledged: creates, updates, deletes."""

from dataclasses import dataclass, field


@dataclass
class Diff:
    creates: list[str] = field(default_factory=list)
    updates: list[str] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return len(self.creates) + len(self.updates) + len(self.deletes)


def diff(desired: dict[str, str], acknowledged: dict[str, str | None]) -> Diff:
    """`desired` and `acknowledged` map item keys to content hashes; a None acknowledgement means never acknowledged."""
    result = Diff()
    for key in sorted(desired):
        if key not in acknowledged or acknowledged[key] is None:
            result.creates.append(key)
        elif acknowledged[key] != desired[key]:
            result.updates.append(key)
        else:
            result.unchanged.append(key)
    result.deletes = sorted(key for key, value in acknowledged.items() if key not in desired and value is not None)
    return result


def apply(acknowledged: dict[str, str | None], desired: dict[str, str], changes: Diff) -> dict[str, str]:
    """The acknowledged state after every change in `changes` succeeded (used to prove diff-then-apply reaches the target)."""
    state = {k: v for k, v in acknowledged.items() if v is not None}
    for key in changes.creates + changes.updates:
        state[key] = desired[key]
    for key in changes.deletes:
        state.pop(key, None)
    return state
