"""`manyi registry`, `manyi survey` and `manyi scores` commands, run in-process through manyi.cli.main."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta

from analytics.center import CenterDB
from analytics.imports.survey import survey_counts
from manyi.cli import main
from manyi.periods import Quarter
from manyi.registry import Registry


def test_registry_validate_ok_and_errors(heze_dir, capsys):
    assert main(["registry", "validate", str(heze_dir)]) == 0
    assert "valid registry (SAMPLE data)" in capsys.readouterr().out
    with (heze_dir / "windows.csv").open("a", encoding="utf-8") as handle:
        handle.write("win-x,hall-nowhere,X,\n")
    assert main(["registry", "validate", str(heze_dir)]) == 2
    err = capsys.readouterr().err
    assert "windows.csv:525:hall_id: unknown hall 'hall-nowhere'" in err


def test_registry_import_and_export_round_trip(heze_dir, tmp_path, capsys):
    db_path = tmp_path / "center.db"
    assert main(["registry", "export", "--db", str(db_path), "--out", str(tmp_path / "none")]) == 0
    assert "exporting the Heze SAMPLE registry" in capsys.readouterr().err
    # the clerk moves a terminal to a new window: close the old row, add a new one
    text = (heze_dir / "assignments.csv").read_text(encoding="utf-8")
    text = text.replace("hz-371702001-w01,win-371702001-01,2025-01-01,,",
                        "hz-371702001-w01,win-371702001-01,2025-01-01,2026-08-01,")
    text += "hz-371702001-w01,win-371702002-09,2026-08-01 00:00,,moved\n"
    (heze_dir / "assignments.csv").write_text(text, encoding="utf-8")
    with (heze_dir / "windows.csv").open("a", encoding="utf-8") as handle:
        handle.write("win-371702002-09,hall-371702002,9号窗口,\n")
    assert main(["registry", "import", str(heze_dir), "--db", str(db_path)]) == 0
    assert "registry version 1 is now active" in capsys.readouterr().out
    assert main(["registry", "export", "--db", str(db_path), "--out", str(tmp_path / "out")]) == 0
    exported = Registry.load(tmp_path / "out")
    assert exported.to_files() == Registry.load(heze_dir).to_files()
    assert exported.current_location("hz-371702001-w01").township_code == "371702002"
    before = exported.locate("hz-371702001-w01", datetime(2026, 7, 31, 16, 0) - timedelta(seconds=1))
    assert before.window_id == "win-371702001-01"


def survey_file(tmp_path, rows: int, bad: int = 0):
    lines = ["日期,手机号,县区,乡镇(街道),评价"]
    lines += [f"2026-07-{1 + i % 28:02d},138{i:08d},曹县,庄寨镇,满意" for i in range(rows)]
    lines += [f"2026-07-01,137{i:08d},曹县,不存在镇,满意" for i in range(bad)]
    path = tmp_path / "survey.csv"
    path.write_text("\n".join(lines) + "\n", encoding="gbk")
    return path


def test_survey_import_command_with_progress_and_summary(tmp_path, capsys):
    path = survey_file(tmp_path, 1500, bad=2)
    db_path = tmp_path / "center.db"
    # all-or-nothing by default: two bad rows, nothing imported, exit 1, every rejected row listed
    assert main(["survey", "import", str(path), "--quarter", "2026Q3", "--db", str(db_path)]) == 1
    captured = capsys.readouterr()
    assert "NOTHING IMPORTED" in captured.out and "1500 valid rows were not imported" in captured.out
    assert "row 1502 [乡镇(街道)] '不存在镇'" in captured.out and "row 1503 [乡镇(街道)] '不存在镇'" in captured.out
    db = CenterDB(db_path)
    assert survey_counts(db, Quarter(2026, 3)).empty
    db.close()
    code = main(["survey", "import", str(path), "--quarter", "2026Q3", "--db", str(db_path), "--partial"])
    captured = capsys.readouterr()
    assert code == 0
    assert "read 1502 rows, imported 1500" in captured.out and "unknown_unit" in captured.out
    assert "row 1502 [乡镇(街道)] '不存在镇'" in captured.out
    assert "[##############################] 1502/1502" in captured.err   # the progress bar
    db = CenterDB(db_path)
    assert int(survey_counts(db, Quarter(2026, 3))["n"].sum()) == 1500
    db.close()
    # again: nothing changes, still exit 0
    assert main(["survey", "import", str(path), "--quarter", "2026Q3", "--db", str(db_path), "--json",
                 "--partial"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["imported"] == 0 and report["already_present"] == 1500 and report["partial"] is True


def test_survey_import_exit_codes(tmp_path, capsys):
    db = str(tmp_path / "center.db")
    bad = tmp_path / "bad.xlsx"
    bad.write_bytes(b"not a workbook")
    assert main(["survey", "import", str(bad), "--quarter", "2026Q3", "--db", db]) == 2
    assert "not a valid .xlsx" in capsys.readouterr().err
    assert main(["survey", "import", str(tmp_path / "missing.csv"), "--quarter", "2026Q3", "--db", db]) == 2
    assert main(["survey", "import", str(survey_file(tmp_path, 1)), "--quarter", "2026 third", "--db", db]) == 2
    only_bad = survey_file(tmp_path, 0, bad=3)
    assert main(["survey", "import", str(only_bad), "--quarter", "2026Q3", "--db", db]) == 1
    assert main(["survey", "import", str(only_bad), "--quarter", "2026Q3", "--db", db, "--partial"]) == 1


def test_templates_and_scores_import(tmp_path, capsys):
    db = str(tmp_path / "center.db")
    for kind in ("survey", "scores"):
        for ext in ("xlsx", "csv"):
            out = tmp_path / f"{kind}.{ext}"
            assert main([kind, "template", "--out", str(out)]) == 0
            assert out.stat().st_size > 0
    assert main(["scores", "import", str(tmp_path / "scores.csv"), "--quarter", "2026Q3", "--db", db]) == 0
    assert "imported 2" in capsys.readouterr().out
    assert main(["survey", "import", str(tmp_path / "survey.xlsx"), "--quarter", "2026Q3", "--db", db]) == 0


def test_import_uses_the_active_registry(heze_dir, tmp_path, capsys):
    db = str(tmp_path / "center.db")
    with (heze_dir / "aliases.csv").open("a", encoding="utf-8") as handle:
        handle.write("庄寨乡政府,371721101,\n")
    assert main(["registry", "import", str(heze_dir), "--db", db]) == 0
    path = tmp_path / "s.csv"
    path.write_text("日期,县区,乡镇,评价\n2026-07-01,,庄寨乡政府,满意\n", encoding="utf-8")
    assert main(["survey", "import", str(path), "--quarter", "2026Q3", "--db", db]) == 0
    out = capsys.readouterr()
    assert "imported 1" in out.out and "SAMPLE registry" not in out.err


def test_cli_module_and_registry_import_only_the_standard_library():
    code = ("import sys, analytics.cli, manyi.registry, demo.sample; "
            "heavy = [m for m in ('pandas', 'openpyxl', 'flask', 'plotly', 'numpy') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_command_of_this_part_is_documented():
    import argparse
    from pathlib import Path

    from manyi.cli import build_parser

    docs = "".join((Path(__file__).parent.parent / "docs" / name).read_text(encoding="utf-8")
                   for name in ("registry.md", "imports.md"))
    top = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for command in ("registry", "survey", "scores"):
        sub = next(a for a in top.choices[command]._actions if isinstance(a, argparse._SubParsersAction))
        for action, parser in sub.choices.items():
            assert f"manyi {command} {action}" in docs, f"manyi {command} {action} is not documented"
            for option in parser._actions:
                for flag in option.option_strings:
                    if flag.startswith("--") and flag != "--help":
                        assert flag in docs, f"{flag} of manyi {command} {action} is not documented"
