"""The core CLI finds the dev tools' subcommands (demo, generate, bench) through the dms_pipelines.commands entry points only."""

import subprocess
import sys
from importlib.metadata import EntryPoint

from dms_pipelines import cli
from dms_pipelines.devtools import commands


def test_the_devtools_commands_come_through_the_entry_point_with_their_flags():
    parser = cli.build_parser()
    demo = parser.parse_args(["demo", "--vehicles", "600", "--seed", "3", "--deltas", "1"])
    assert (demo.func, demo.vehicles, demo.seed, demo.deltas) == (commands.cmd_demo, 600, 3, 1)
    generate = parser.parse_args(["generate", "--vehicles", "10", "--dealers", "1", "--seed", "2", "--deltas", "1", "--out", "x"])
    assert generate.func is commands.cmd_generate and generate.out == "x"
    bench = parser.parse_args(["bench", "--vehicles", "0", "--dealers", "2", "--max-concurrent", "2", "--sftp", "5", "--sold-latency", "--hourly-job", "9", "--json", "--layout", "star5_xml"])
    assert bench.func is commands.cmd_bench and (bench.vehicles, bench.sftp, bench.hourly_job, bench.layout) == ([0], 5, 9, "star5_xml")
    assert parser.parse_args(["run", "--dealer", "leeds"]).func is cli.cmd_run
    help_text = parser.format_help()
    assert all(name in help_text for name in ("demo", "generate", "bench", "run", "report"))


def test_the_core_cli_does_not_import_the_devtools():
    code = "import sys, dms_pipelines.cli; print(sorted(m for m in sys.modules if m.startswith('dms_pipelines.devtools')))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_a_broken_plug_in_is_reported_and_the_operators_commands_still_work(monkeypatch, capsys):
    broken = EntryPoint(name="broken", value="dms_pipelines_no_such_module:register", group=cli.COMMANDS_GROUP)
    real = EntryPoint(name="devtools", value="dms_pipelines.devtools.commands:register", group=cli.COMMANDS_GROUP)
    monkeypatch.setattr(cli, "entry_points", lambda group: [broken, real, real] if group == cli.COMMANDS_GROUP else [])
    parser = cli.build_parser()  # the duplicate is registered once (argparse would refuse a second "demo")
    assert parser.parse_args(["report"]).func is cli.cmd_report
    assert parser.parse_args(["demo"]).func is commands.cmd_demo
    assert "dms_pipelines_no_such_module:register are not available" in capsys.readouterr().err
