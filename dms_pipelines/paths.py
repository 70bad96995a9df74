"""Where things live: the data root, the config file and the folders under them."""

import os
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
BUILTIN_PROFILES = PACKAGE_DIR / "formats" / "profiles"  # the mapping profiles shipped in the package (package data)
PROJECT_ROOT = PACKAGE_DIR.parent  # the source tree's root, for the tests (docs/ files); the product never uses it
DATA_ENV = "DMS_PIPELINES_DATA"
CONFIG_ENV = "DMS_PIPELINES_CONFIG"


def data_root(environ: dict[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    value = environ.get(DATA_ENV)
    return Path(value).expanduser().resolve() if value else (Path.cwd() / "data").resolve()


def config_path(environ: dict[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    value = environ.get(CONFIG_ENV)
    if value:
        return Path(value).expanduser().resolve()
    return data_root(environ) / "config" / "dms_pipelines.yaml"


@dataclass(frozen=True)
class DataPaths:
    """Every folder the pipeline reads or writes, derived from one data root."""

    root: Path

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def landing(self) -> Path:
        return self.root / "landing"

    @property
    def lead_inbox(self) -> Path:
        return self.root / "lead_inbox"

    @property
    def lead_landing(self) -> Path:
        """lead_landing/<dealer>/: every raw lead payload and file, kept unchanged (webhooks write here before their 2xx)."""
        return self.root / "lead_landing"

    @property
    def customer_inbox(self) -> Path:
        return self.root / "customer_inbox"

    @property
    def customer_landing(self) -> Path:
        """customer_landing/<dealer>/: every DMS customer export as landed (rewritten only by an erasure)."""
        return self.root / "customer_landing"

    @property
    def image_inbox(self) -> Path:
        """image_inbox/<dealer>/: the imaging service's feed files (CSV or JSON) as dropped."""
        return self.root / "image_inbox"

    @property
    def outbox(self) -> Path:
        return self.root / "outbox"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def warehouse_tables(self) -> Path:
        return self.root / "warehouse"

    @property
    def warehouse_db(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def operations_db_url(self) -> str:
        return f"sqlite:///{self.state / 'operations.sqlite'}"

    def profile_dirs(self) -> list[Path]:
        """The data root's own profiles first, then the ones shipped in the package."""
        dirs = [self.root / "profiles", BUILTIN_PROFILES]
        return list(dict.fromkeys(d.resolve() for d in dirs))

    def resolve(self, path: str | Path) -> Path:
        """A path from the config file: absolute as written, otherwise relative to the data root."""
        path = Path(path).expanduser()
        return path if path.is_absolute() else self.root / path
