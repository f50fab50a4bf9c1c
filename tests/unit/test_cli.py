"""The ``fabric`` command: help texts, configuration errors, and status/down with no fabric up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fabric_ray.cli import build_parser, main

FABRIC = Path(sys.executable).parent / "fabric"


@pytest.fixture
def env(tmp_path):
    """An environment with an empty fabric home and no FABRIC_* settings from outside."""
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("FABRIC_")}
    clean["FABRIC_HOME"] = str(tmp_path / "home")
    return clean


def fabric(*args: str, env: dict, module: bool = False) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "fabric_ray.cli", *args] if module else [str(FABRIC), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)


def test_the_console_script_is_installed():
    assert FABRIC.exists()


def test_top_level_help_lists_commands_and_configuration(env):
    out = fabric("--help", env=env)
    assert out.returncode == 0, out.stderr
    for word in ("demo", "up", "status", "down", "--config", "FABRIC_SERVING__PORT", "fabric.yaml"):
        assert word in out.stdout, word


def test_module_entry_point_works_too(env):
    out = fabric("--help", env=env, module=True)
    assert out.returncode == 0 and "usage: fabric" in out.stdout


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ("demo", ["--events", "--sample", "--seed", "--bad-fraction", "--timeout", "--no-progress", "Exits 1 on any mismatch"]),
        ("up", ["--timeout", "background", "home folder"]),
        ("status", ["--address", "--json", "lag"]),
        ("down", ["--timeout", "Stop the partition actors"]),
    ],
)
def test_each_subcommand_help_explains(env, command, words):
    out = fabric(command, "--help", env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"usage: fabric {command}")
    for word in words:
        assert word in out.stdout, word


def test_no_command_is_a_usage_error(env):
    out = fabric(env=env)
    assert out.returncode == 2
    assert "required: COMMAND" in out.stderr


def test_unknown_command_is_a_usage_error(env):
    out = fabric("launch", env=env)
    assert out.returncode == 2 and "invalid choice: 'launch'" in out.stderr


def test_bad_config_file_exits_2_naming_the_key(env, tmp_path):
    bad = tmp_path / "fabric.yaml"
    bad.write_text("serving:\n  prot: 9000\n")
    out = fabric("--config", str(bad), "status", env=env)
    assert out.returncode == 2
    assert "serving.prot: unknown key" in out.stderr
    assert str(bad) in out.stderr
    assert out.stderr.startswith("fabric status: ")
    assert "Traceback" not in out.stderr


def test_bad_config_value_exits_2_naming_key_and_value(env, tmp_path):
    bad = tmp_path / "fabric.yaml"
    bad.write_text("serving:\n  port: 70000\n")
    out = fabric("--config", str(bad), "down", env=env)
    assert out.returncode == 2
    assert "serving.port" in out.stderr and "70000" in out.stderr


def test_bad_env_value_exits_2(env):
    out = fabric("status", env={**env, "FABRIC_STREAM__BATCH_SIZE": "lots"})
    assert out.returncode == 2
    assert "stream.batch_size" in out.stderr and "'lots'" in out.stderr


def test_missing_config_file_exits_2(env, tmp_path):
    out = fabric("--config", str(tmp_path / "nope.yaml"), "status", env=env)
    assert out.returncode == 2
    assert "nope.yaml" in out.stderr and "does not exist" in out.stderr


def test_fabric_config_env_var_is_read(env, tmp_path):
    bad = tmp_path / "fabric.yaml"
    bad.write_text("nonsense_section: 1\n")
    out = fabric("status", env={**env, "FABRIC_CONFIG": str(bad)})
    assert out.returncode == 2 and "nonsense_section: unknown key" in out.stderr


def test_status_with_nothing_up_exits_2_and_says_what_to_do(env):
    out = fabric("status", env=env)
    assert out.returncode == 2
    assert "no fabric is up under" in out.stderr
    assert env["FABRIC_HOME"] in out.stderr
    assert "fabric up" in out.stderr and "--address" in out.stderr
    assert "Traceback" not in out.stderr


def test_status_ignores_a_stale_daemon_file(env, tmp_path):
    home = Path(env["FABRIC_HOME"])
    home.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    (home / "daemon.json").write_text(f'{{"pid": {int(dead.stdout)}, "ray_address": "127.0.0.1:1"}}')
    out = fabric("status", env=env)
    assert out.returncode == 2 and "no fabric is up" in out.stderr
    assert not (home / "daemon.json").exists()  # the leftover of a dead daemon is cleaned up


def test_down_with_nothing_up_exits_0(env):
    out = fabric("down", env=env)
    assert out.returncode == 0, out.stderr
    assert "no fabric is up under" in out.stdout and env["FABRIC_HOME"] in out.stdout


def test_up_with_a_remote_ray_address_is_refused_in_process(tmp_path, monkeypatch, capsys):
    for name in list(os.environ):
        if name.upper().startswith("FABRIC_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("FABRIC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FABRIC_RAY__ADDRESS", "10.0.0.1:6379")
    assert main(["up"]) == 2
    err = capsys.readouterr().err
    assert "ray.address" in err and "fabric demo" in err
    assert (tmp_path / "home").is_dir()


def test_parser_defaults():
    p = build_parser()
    demo = p.parse_args(["demo"])
    assert (demo.events, demo.sample, demo.users, demo.seed, demo.bad_fraction, demo.timeout, demo.no_progress) == (
        100_000, 200, 10_000, 7, 0.001, 600, False
    )
    assert p.parse_args(["up"]).timeout == 180
    assert p.parse_args(["down"]).timeout == 90
    status = p.parse_args(["--config", "x.yaml", "status", "--json", "--address", "auto"])
    assert (status.config, status.json, status.address) == ("x.yaml", True, "auto")


# -- products -------------------------------------------------------------------------------------

DEMO_PRODUCTS = Path(__file__).resolve().parents[2] / "fabric_ray" / "demo" / "products"


@pytest.fixture
def metadata(tmp_path, monkeypatch):
    """A clean FABRIC_* environment whose metadata store is a fresh SQLite file; returns its path."""
    for name in list(os.environ):
        if name.upper().startswith("FABRIC_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("FABRIC_HOME", str(tmp_path / "home"))
    db = tmp_path / "meta" / "metadata.db"
    monkeypatch.setenv("FABRIC_METADATA__URL", f"sqlite:///{db}")
    return db


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_products_help_explains_the_actions(env):
    out = fabric("products", "--help", env=env)
    assert out.returncode == 0, out.stderr
    for word in ("apply", "list", "show", "metadata.url", "no Ray needed", "docs/data-products.md"):
        assert word in out.stdout, word
    assert "products" in fabric("--help", env=env).stdout


@pytest.mark.parametrize(
    ("action", "words"),
    [
        ("apply", ["DIR", "--dry-run", "--config", "nothing is registered", "Exits 2"]),
        ("list", ["--json", "--config", "table"]),
        ("show", ["NAME", "--json", "classification tags", "Exits 2"]),
    ],
)
def test_products_action_help(capsys, action, words):
    with pytest.raises(SystemExit) as info:
        main(["products", action, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: fabric products {action}")
    for word in words:
        assert word in " ".join(out.split()), word


def test_products_apply_list_show(metadata, capsys):
    code, out, err = run(capsys, "products", "apply", str(DEMO_PRODUCTS))
    assert code == 0, err
    assert out.splitlines()[0].split() == ["product", "subject", "version", "schema", "id", "status"]
    assert out.splitlines()[2].split() == ["payments", "payments-value", "1", "1", "new"]
    assert "applied 1 product(s), 1 changed" in out and str(metadata) in out
    code, out, _ = run(capsys, "products", "apply", str(DEMO_PRODUCTS))
    assert code == 0 and out.splitlines()[2].split()[-1] == "unchanged" and "0 changed" in out

    code, out, _ = run(capsys, "products", "list")
    assert code == 0
    assert out.splitlines()[2].split() == [
        "payments", "payments", "payments-team@example.com", "payments", "-", "payments-value", "5m", "8", "card_number,email"
    ]
    code, out, _ = run(capsys, "products", "list", "--json")
    assert code == 0 and [p["name"] for p in json.loads(out)] == ["payments"]

    code, out, _ = run(capsys, "products", "show", "payments")
    assert code == 0
    assert "subject      payments-value (AVRO, version 1, schema id 1)" in out
    assert "(not enforced yet)" in out and "amount: > 0 and <= 10000" in out
    card = next(line for line in out.splitlines() if line.startswith("card_number"))
    assert card.split() == ["card_number", '["null","string"]', "pii,sensitive"]
    code, out, _ = run(capsys, "products", "show", "payments", "--json")
    data = json.loads(out)
    assert code == 0 and data["registered"] == {"version": 1, "id": 1} and data["freshness"] == "5m"


def test_products_dry_run_writes_nothing(metadata, capsys):
    code, out, err = run(capsys, "products", "apply", str(DEMO_PRODUCTS), "--dry-run")
    assert code == 0, err
    assert "dry run: 1 of 1 product(s) would change; nothing written" in out
    assert not metadata.exists()
    code, out, _ = run(capsys, "products", "list")
    assert code == 0 and "no data products in" in out and "fabric products apply" in out
    assert not metadata.exists()  # listing does not create the store either


def test_products_apply_reports_every_problem_and_registers_nothing(metadata, capsys, tmp_path):
    folder = tmp_path / "products"
    folder.mkdir()
    (folder / "a.yaml").write_text("name: a\ndomain: d\nownr: o\ntopic: a\nschema: a.avsc\nfreshness: soon\n")
    (folder / "b.yaml").write_text(
        "name: b\ndomain: d\nowner: o\ntopic: b\n"
        "schema: {type: record, name: B, fields: [{name: x, type: long}]}\n"
        "required: [y]\nrules: [{between: {column: x, min: 5, max: 1}}]\n"
    )
    code, out, err = run(capsys, "products", "apply", str(folder))
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert lines == [
        f"fabric products apply: {folder / 'a.yaml'}: product 'a': ownr: unknown key (did you mean 'owner'?)",
        f"fabric products apply: {folder / 'a.yaml'}: product 'a': owner: missing",
        f"fabric products apply: {folder / 'a.yaml'}: product 'a': freshness: duration 'soon' is not a positive number "
        "of seconds or text like 30s, 5m, 1h30m, 2d",
        f"fabric products apply: {folder / 'a.yaml'}: product 'a': schema: schema file '{folder / 'a.avsc'}' does not exist",
        f"fabric products apply: {folder / 'b.yaml'}: product 'b': required: 'y' is not a field of the schema (fields: x)",
        f"fabric products apply: {folder / 'b.yaml'}: product 'b': rules[0]: rule between on 'x': min 5 is greater than max 1",
        f"fabric products apply: 6 problem(s) in {folder}; nothing registered",
    ]
    assert not metadata.exists()


def test_products_apply_incompatible_evolution_exits_2_and_changes_nothing(metadata, capsys, tmp_path):
    assert run(capsys, "products", "apply", str(DEMO_PRODUCTS))[0] == 0
    folder = tmp_path / "evolved"
    folder.mkdir()
    text = (DEMO_PRODUCTS / "payments.yaml").read_text()
    evolved = text.replace("{name: amount, type: double", "{name: amount, type: string").replace(
        "  - between: {column: amount, min: 0, max: 10000, min_inclusive: false}\n", ""
    )
    assert evolved != text
    (folder / "payments.yaml").write_text(evolved)
    (folder / "clicks.yaml").write_text(
        "name: clicks\ndomain: web\nowner: web\ndataset: clicks\nschema_type: JSON\n"
        "schema: {type: object, properties: {url: {type: string}}}\n"
    )
    code, out, err = run(capsys, "products", "apply", str(folder))
    assert code == 2, out
    lines = err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"fabric products apply: {folder / 'payments.yaml'}: product 'payments': ")
    assert "incompatible with an earlier schema for subject 'payments-value'" in lines[0]
    assert lines[1] == "fabric products apply: 1 product(s) refused by the schema registry; nothing registered"
    _, out, _ = run(capsys, "products", "list", "--json")
    assert [p["name"] for p in json.loads(out)] == ["payments"]  # clicks was not stored either


def test_products_show_unknown_exits_2(metadata, capsys):
    run(capsys, "products", "apply", str(DEMO_PRODUCTS))
    code, out, err = run(capsys, "products", "show", "refunds")
    assert code == 2 and out == ""
    assert err.splitlines()[0] == f"fabric products show: no data product 'refunds' in sqlite:///{metadata} (known: payments)"


def test_products_config_may_follow_the_action(metadata, capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("FABRIC_METADATA__URL")
    db = tmp_path / "from-config.db"
    config = tmp_path / "fabric.yaml"
    config.write_text(f"metadata:\n  url: sqlite:///{db}\n")
    code, out, err = run(capsys, "products", "apply", str(DEMO_PRODUCTS), "--config", str(config))
    assert code == 0, err
    assert db.exists() and not metadata.exists()
    assert run(capsys, "--config", str(config), "products", "show", "payments")[0] == 0
    args = build_parser().parse_args(["--config", "top.yaml", "products", "list"])
    assert args.config == "top.yaml"  # the action's --config does not erase the top-level one


def test_products_parser_defaults():
    args = build_parser().parse_args(["products", "apply", "dir"])
    assert (args.command, args.products_command, args.dir, args.dry_run, args.config) == ("products", "apply", "dir", False, None)
    assert build_parser().parse_args(["products", "show", "x", "--json"]).json is True


# -- features -------------------------------------------------------------------------------------


@pytest.fixture
def features_home(tmp_path, monkeypatch):
    """A clean FABRIC_* environment with an empty fabric home; returns the home."""
    for name in list(os.environ):
        if name.upper().startswith("FABRIC_"):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    monkeypatch.setenv("FABRIC_HOME", str(home))
    return home


def test_features_help_explains_the_actions(env):
    out = fabric("features", "--help", env=env)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    for word in ("apply", "list", "materialize", "demo-data", "features.repo", "features.online_store", "Redis",
                 "<storage root>/features/<view>/", "docs/features.md"):
        assert word in text, word
    assert "features" in fabric("--help", env=env).stdout


@pytest.mark.parametrize(
    ("action", "words"),
    [
        ("apply", ["--json", "--config", "feast apply", "unchanged", "Exits 2", "No Ray needed"]),
        ("list", ["--json", "--config", "TTL", "no apply needed"]),
        ("materialize", ["VIEW", "--start", "--end", "--full", "--no-progress", "incremental", "ISO 8601", "docs/materialization.md"]),
        ("demo-data", ["--source", "--events", "--users", "--days", "--seed", "payments_daily", "<storage root>/features/<view>/<day>.parquet"]),
    ],
)
def test_features_action_help(capsys, action, words):
    with pytest.raises(SystemExit) as info:
        main(["features", action, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: fabric features {action}")
    for word in words:
        assert word in " ".join(out.split()), word


def test_features_list_reads_the_repo_without_apply(features_home, capsys):
    code, out, err = run(capsys, "features", "list")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("feature repo ") and "(project fabric_payments)" in lines[0]
    rows = {line.split()[0]: line for line in lines[4:7]}
    assert set(rows) == {"user_payments", "user_daily", "merchant_daily"}
    assert "merchant (merchant_id int64)" in rows["merchant_daily"] and " 2d " in rows["merchant_daily"]
    assert "user_daily_push" in rows["user_daily"] and f"file://{features_home}/storage/features/user_daily" in rows["user_daily"]
    assert rows["user_payments"].split()[-1] == "-"  # no batch source: the stream feeds it
    assert lines[-1].split() == ["fraud_model", "10", "user_payments,", "user_daily,", "merchant_daily"]
    assert not (features_home / "features").exists()

    code, out, _ = run(capsys, "features", "list", "--json")
    data = json.loads(out)
    assert code == 0 and [v["name"] for v in data["views"]] == ["user_payments", "user_daily", "merchant_daily"]
    daily = data["views"][1]
    assert daily["features"] == {"txn_count_1d": "int64", "amount_sum_1d": "float64", "large_txn_count_1d": "int64"}
    assert daily["ttl_s"] == 172800.0 and daily["batch_source"]["timestamp_field"] == "event_ts"
    assert len(data["services"]["fraud_model"]) == 10


def test_features_apply_prints_what_it_registered_and_is_idempotent(features_home, capsys):
    import sqlite3

    code, out, err = run(capsys, "features", "apply")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["kind", "name", "status"]
    assert ["feature", "view", "merchant_daily", "new"] in [line.split() for line in lines]
    assert lines[-1].startswith("applied 13 object(s), 13 changed, to project 'fabric_payments': registry ")
    assert f"online store sqlite {features_home / 'features' / 'online.db'} (3 view(s) ready)" in lines[-1]
    with sqlite3.connect(features_home / "features" / "online.db") as db:
        tables = {r[0] for r in db.execute("select name from sqlite_master where type='table'")}
    assert "fabric_payments_user_daily" in tables
    code, out, _ = run(capsys, "features", "apply", "--json")
    report = json.loads(out)
    assert code == 0 and report["changed"] == 0 and {o["status"] for o in report["objects"]} == {"unchanged"}


def test_features_apply_of_a_broken_repo_exits_2_naming_the_file(features_home, capsys, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "defs.py").write_text("import feast\nraise ValueError('half written')\n")
    monkeypatch.setenv("FABRIC_FEATURES__REPO", str(repo))
    code, out, err = run(capsys, "features", "apply")
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"fabric features apply: feature repo file {repo / 'defs.py'}: ValueError: half written",
        "fabric features apply: nothing applied",
    ]
    code, _, err = run(capsys, "features", "list")
    assert code == 2 and err.splitlines()[-1] == f"fabric features list: fix the feature repo {repo}"


def test_features_demo_data_writes_the_batch_parquet(features_home, capsys):
    code, out, err = run(capsys, "features", "demo-data", "--events", "2000", "--users", "50", "--days", "2")
    assert code == 0, err
    lines = out.splitlines()
    assert " payments from generated payments, days " in lines[0] and lines[0].endswith(" (UTC)")
    assert [line.split()[0] for line in lines[3:5]] == ["user_daily", "merchant_daily"]
    assert lines[3].split()[2] == "2"  # one file per day
    assert "fabric features materialize" in lines[-1]
    assert len(list((features_home / "storage" / "features" / "user_daily").glob("*.parquet"))) == 2
    code, out, _ = run(capsys, "features", "demo-data", "--events", "2000", "--days", "2", "--json")
    assert code == 0 and json.loads(out)["source"] == "events" and len(json.loads(out)["days"]) == 2
    code, _, err = run(capsys, "features", "demo-data", "--source", "etl")
    assert code == 2 and "no dataset 'payments_daily'" in err and err.splitlines()[-1] == "fabric features demo-data: nothing written"


def test_features_materialize_checks_its_arguments_before_running(features_home, capsys):
    code, out, err = run(capsys, "features", "materialize", "user_weekly", "user_payments", "--start", "yesterday",
                         "--end", "2026-01-01")
    assert code == 2 and out == ""
    assert err.splitlines() == [
        "fabric features materialize: unknown feature view 'user_weekly'; known views: ['merchant_daily', 'user_daily', 'user_payments']",
        "fabric features materialize: feature view 'user_payments' has no batch source to materialize from (the stream or pushes feed it)",
        "fabric features materialize: --start 'yesterday' is not an ISO 8601 time, e.g. 2026-01-31 or 2026-01-31T12:00:00Z",
        "fabric features materialize: nothing materialized",
    ]
    code, _, err = run(capsys, "features", "materialize", "--start", "2026-02-01", "--end", "2026-01-01T00:00:00+00:00")
    assert code == 2 and "--start 2026-02-01 is not before --end 2026-01-01T00:00:00+00:00" in err


def test_features_parser_defaults():
    args = build_parser().parse_args(["features", "materialize"])
    assert (args.views, args.start, args.end, args.full, args.no_progress, args.json, args.config) == ([], None, None, False, False, False, None)
    args = build_parser().parse_args(["features", "materialize", "user_daily", "merchant_daily", "--full", "--start", "2026-01-01"])
    assert (args.views, args.full, args.start) == (["user_daily", "merchant_daily"], True, "2026-01-01")
    demo = build_parser().parse_args(["features", "demo-data"])
    assert (demo.source, demo.events, demo.users, demo.days, demo.seed) == ("auto", 20_000, 1_000, 3, 7)
