"""The short summary a run prints: vehicles in, accepted, quarantined with top reasons, feed files, where to look next."""

import duckdb

from dms_pipelines.config import Settings
from dms_pipelines.paths import DataPaths


def summary_rows(paths: DataPaths) -> dict:
    """Figures from the warehouse (read-only), so the summary shows what analysts will see."""
    with duckdb.connect(str(paths.warehouse_db), read_only=True) as connection:
        per_dealer = connection.execute(
            """
            SELECT f.dealer_id,
                   sum(f.rows_total) FILTER (WHERE f.status = 'processed') AS records,
                   sum(f.rows_accepted) FILTER (WHERE f.status = 'processed') AS accepted,
                   sum(f.rows_quarantined) FILTER (WHERE f.status = 'processed') AS quarantined,
                   count(*) FILTER (WHERE f.status = 'held') AS held,
                   count(*) FILTER (WHERE f.status = 'failed') AS failed,
                   (SELECT count(*) FROM stock_current s WHERE s.dealer_id = f.dealer_id) AS vehicles
            FROM ingested_files f GROUP BY f.dealer_id ORDER BY f.dealer_id
            """
        ).fetchall()
        reasons = connection.execute(
            """
            SELECT coalesce(field, '(row)') || ': ' || rule AS reason, count(*) AS n
            FROM quarantine WHERE severity = 'error' AND status = 'open'
            GROUP BY ALL ORDER BY n DESC, reason LIMIT 6
            """
        ).fetchall()
    return {"dealers": per_dealer, "reasons": reasons}


def print_summary(settings: Settings, paths: DataPaths, echo=print) -> None:
    figures = summary_rows(paths)
    echo(f"   {'dealer':<12}{'rows in':>9}{'accepted':>10}{'quarantined':>13}{'in stock':>10}")
    for dealer_id, records, accepted, quarantined, held, failed, vehicles in figures["dealers"]:
        note = (f"  {held} export(s) HELD" if held else "") + (f"  {failed} file(s) FAILED" if failed else "")
        echo(f"   {dealer_id:<12}{records or 0:>9}{accepted or 0:>10}{quarantined or 0:>13}{vehicles:>10}{note}")
    if figures["reasons"]:
        echo("   top quarantine reasons:")
        for reason, count in figures["reasons"]:
            echo(f"     {count:>5}  {reason}")
    echo("   feed files:")
    for marketplace, market in settings.marketplaces.items():
        if market.destination.kind != "local":
            echo(f"     {marketplace}: {market.destination.kind} ({market.destination.resolved_base_url() if market.destination.kind == 'http_api' else getattr(market.destination, 'host', '')})")
            continue
        folder = paths.resolve(market.destination.path)
        for path in sorted(folder.glob("*")) if folder.exists() else []:
            if path.is_file() and not path.name.startswith("."):
                echo(f"     {path.relative_to(paths.root) if path.is_relative_to(paths.root) else path}  ({path.stat().st_size:,} bytes)")
    echo("next:")
    echo("   make dev                                   # the Dagster UI at http://localhost:3000 (runs, assets, checks)")
    echo(f"   duckdb -readonly {paths.warehouse_db}      # or python -c 'import duckdb; ...'")
    echo("   SELECT dealer_id, rule, count(*) FROM quarantine GROUP BY ALL ORDER BY 3 DESC;")
