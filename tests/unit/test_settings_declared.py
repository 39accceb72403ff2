"""Each setting is declared once (config.Settings); the docs, the template and the engine's defaults agree with it."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import cfn_yaml

from reranker.config import (
    DECLARED_SETTINGS,
    LAMBDA_MEMORY_SIZE,
    MAX_LAMBDA_VCPUS,
    PLATFORM_VARIABLES,
    Settings,
    SettingsError,
)
from reranker.schemas import Limits
from reranker.setting import DeclaredSetting, EnvironmentReader, declared_settings, setting
from tools import settings_table

REPO = Path(__file__).resolve().parents[2]
SETTINGS = {item.variable: item for item in DECLARED_SETTINGS}
PLATFORM = {item.variable: item for item in PLATFORM_VARIABLES}
TEMPLATE = cfn_yaml.loads((REPO / "template.yaml").read_text(encoding="utf-8"))
PARAMETERS: dict[str, Any] = TEMPLATE["Parameters"]
FUNCTION_ENVIRONMENT: dict[str, Any] = TEMPLATE["Resources"]["RerankFunction"]["Properties"]["Environment"][
    "Variables"
]


def read(item: DeclaredSetting, raw: str) -> tuple[Any, list[str]]:
    """The value one declaration reads from ``raw``, and the problems it found."""
    reader = EnvironmentReader({item.variable: raw})
    return item.read(reader, item.default), reader.problems


def problems(environ: dict[str, str]) -> str:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(environ)
    return caught.value.public_message


# --- the declaration itself ---------------------------------------------------------------------------------


def test_every_field_is_a_declared_setting_named_after_its_variable() -> None:
    assert [item.name for item in DECLARED_SETTINGS] == [item.name for item in dataclasses.fields(Settings)]
    for item in DECLARED_SETTINGS:
        assert item.variable == item.name.upper()
        assert item.doc.strip() and "\n" not in item.doc
    assert len(SETTINGS) == len(DECLARED_SETTINGS)
    assert not set(SETTINGS) & set(PLATFORM)


@pytest.mark.parametrize("item", DECLARED_SETTINGS, ids=lambda item: item.variable)
def test_every_default_is_a_value_its_own_declaration_accepts(item: DeclaredSetting) -> None:
    assert getattr(Settings(), item.name) == item.default == getattr(Settings, item.name)
    if item.default is None:
        assert item.optional
        return
    raw = str(item.default).lower() if item.kind == "boolean" else str(item.default)
    assert read(item, raw) == (item.default, [])
    if item.kind in ("integer", "number"):
        assert item.minimum <= item.default
        assert item.maximum is None or item.default <= item.maximum
    if item.kind == "choice":
        assert item.default in item.choices


def test_unset_and_blank_variables_take_the_declared_defaults() -> None:
    blank = {item.variable: " " for item in DECLARED_SETTINGS} | {LAMBDA_MEMORY_SIZE: "2048"}
    for environ in ({LAMBDA_MEMORY_SIZE: "2048"}, blank):
        settings = Settings.from_env(environ)
        for item in DECLARED_SETTINGS:
            assert getattr(settings, item.name) == item.default, item.variable


@pytest.mark.parametrize(
    ("memory", "runs"),
    [
        ("128", 1),
        ("1769", 1),
        ("2653", 1),  # 1.4999 vCPUs
        ("2654", 2),  # 1.5001: a second run uses the half vCPU one run leaves idle
        ("3538", 2),
        ("5307", 3),
        ("7076", 4),
        ("8845", 5),
        ("9729", 5),
        ("9730", 6),
        ("10240", 6),  # Lambda's maximum: 5.8 vCPUs of quota over six
        ("", None),
    ],
)
def test_parallel_runs_follow_the_vcpus_of_the_memory_size_unless_set(memory: str, runs: int | None) -> None:
    expected = min(MAX_LAMBDA_VCPUS, os.cpu_count() or 1) if runs is None else runs
    assert Settings.from_env({LAMBDA_MEMORY_SIZE: memory}).engine_parallel_runs == expected
    assert (
        Settings.from_env({LAMBDA_MEMORY_SIZE: memory, "ENGINE_PARALLEL_RUNS": "3"}).engine_parallel_runs == 3
    )
    assert Settings().engine_parallel_runs == 1


@pytest.mark.parametrize(
    ("memory", "spinning"), [("128", False), ("1768", False), ("1769", True), ("10240", True), ("", True)]
)
def test_nothing_spins_below_one_vcpu_unless_set(memory: str, spinning: bool) -> None:
    assert Settings.from_env({LAMBDA_MEMORY_SIZE: memory}).ort_allow_spinning is spinning
    chosen = Settings.from_env({LAMBDA_MEMORY_SIZE: memory, "ORT_ALLOW_SPINNING": str(not spinning)})
    assert chosen.ort_allow_spinning is not spinning
    assert Settings().ort_allow_spinning is True


def test_below_one_vcpu_one_run_is_in_flight_and_the_tail_runs_like_the_rest() -> None:
    settings = Settings.from_env({LAMBDA_MEMORY_SIZE: "1024"})
    assert (settings.engine_parallel_runs, settings.ort_allow_spinning) == (1, False)
    assert settings.engine_tail_intra_op_threads == 1


def test_limits_take_their_defaults_from_the_declaration() -> None:
    assert Limits() == Limits.from_settings(Settings())


def test_a_setting_of_a_type_the_environment_cannot_carry_is_refused() -> None:
    @dataclasses.dataclass(frozen=True)
    class Listed:
        names: list[str] = setting("NAMES", dataclasses.field(default_factory=list), "a list")

    @dataclasses.dataclass(frozen=True)
    class Undeclared:
        name: str = "x"

    with pytest.raises(TypeError, match="cannot be read from the environment"):
        declared_settings(Listed)
    with pytest.raises(TypeError, match="not declared with setting"):
        declared_settings(Undeclared)


# --- error messages: exactly as before the declaration (recorded from the previous reader) ----------------


def test_wrong_types_are_reported_for_every_setting_in_declaration_order() -> None:
    environ = {item.variable: "bad" for item in DECLARED_SETTINGS} | {LAMBDA_MEMORY_SIZE: "bad"}
    assert problems(environ) == "invalid settings: " + "; ".join(
        [
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE must be an integer, got 'bad'",
            "MODEL_ARCHIVE_MAX_BYTES must be an integer, got 'bad'",
            "MODEL_ARCHIVE_MAX_FILES must be an integer, got 'bad'",
            "MODEL_S3_MAX_ATTEMPTS must be an integer, got 'bad'",
            "MODEL_S3_CONNECT_TIMEOUT_SECONDS must be a number, got 'bad'",
            "MODEL_S3_READ_TIMEOUT_SECONDS must be a number, got 'bad'",
            "MODEL_LOAD_BUDGET_SECONDS must be a number, got 'bad'",
            "MODEL_LOAD_RETRY_SECONDS must be a number, got 'bad'",
            "ENGINE_SCHEDULE must be one of auto, single, sorted_batches, exact_batches, got 'bad'",
            "ENGINE_BATCH_SIZE must be an integer, got 'bad'",
            "ENGINE_EXACT_BATCH_MAX_PAIRS must be an integer, got 'bad'",
            "ENGINE_EXACT_BATCH_MAX_TOKENS must be an integer, got 'bad'",
            "ENGINE_EXACT_BATCH_MIN_GAIN_PERCENT must be an integer, got 'bad'",
            "ENGINE_COST_PROBE_MS must be an integer, got 'bad'",
            "ENGINE_MAX_LENGTH must be an integer, got 'bad'",
            "ORT_INTRA_OP_THREADS must be an integer, got 'bad'",
            "ORT_ALLOW_SPINNING must be true or false, got 'bad'",
            "ENGINE_PARALLEL_RUNS must be an integer, got 'bad'",
            "ENGINE_TAIL_INTRA_OP_THREADS must be an integer, got 'bad'",
            "MAX_PASSAGES must be an integer, got 'bad'",
            "MAX_PASSAGE_CHARS must be an integer, got 'bad'",
            "MAX_QUERY_CHARS must be an integer, got 'bad'",
            "MAX_TOTAL_CHARS must be an integer, got 'bad'",
            "MAX_BATCH_REQUESTS must be an integer, got 'bad'",
            "LONG_DOCUMENTS must be one of truncate, window, got 'bad'",
            "WINDOW_MAX_PER_PASSAGE must be an integer, got 'bad'",
            "WINDOW_OVERLAP_TOKENS must be an integer, got 'bad'",
            "DEADLINE_POLICY must be one of fallback, error, got 'bad'",
            "DEADLINE_MARGIN_MS must be an integer, got 'bad'",
            "SCORE_CACHE_MB must be a number, got 'bad'",
            "FANOUT_MAX_WORKERS must be an integer, got 'bad'",
            "FANOUT_TARGET_MS must be an integer, got 'bad'",
            "FANOUT_TOKEN_COST_US must be a number, got 'bad'",
            "FANOUT_MEASURE_TOKEN_COST must be true or false, got 'bad'",
            "FANOUT_CONNECT_TIMEOUT_SECONDS must be a number, got 'bad'",
            "AUTH_MODE must be one of none, bearer, got 'bad'",
            "AUTH_TOKENS_MAX_AGE_SECONDS must be an integer, got 'bad'",
            "LOG_PAYLOADS must be true or false, got 'bad'",
            "MODEL_S3_URI must look like s3://bucket/key.zip",
            "MODEL_SHA256 must be 64 hexadecimal characters",
        ]
    )


def test_values_below_the_bounds_are_reported_with_the_bounds() -> None:
    environ = {item.variable: "-1" for item in DECLARED_SETTINGS} | {LAMBDA_MEMORY_SIZE: "-1"}
    assert problems(environ) == "invalid settings: " + "; ".join(
        [
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE must be >= 0, got -1",
            "MODEL_ARCHIVE_MAX_BYTES must be >= 1, got -1",
            "MODEL_ARCHIVE_MAX_FILES must be >= 1, got -1",
            "MODEL_S3_MAX_ATTEMPTS must be between 1 and 10, got -1",
            "MODEL_S3_CONNECT_TIMEOUT_SECONDS must be between 0.1 and 60, got -1.0",
            "MODEL_S3_READ_TIMEOUT_SECONDS must be between 0.1 and 300, got -1.0",
            "MODEL_LOAD_BUDGET_SECONDS must be between 0.5 and 900, got -1.0",
            "MODEL_LOAD_RETRY_SECONDS must be between 0 and 3600, got -1.0",
            "ENGINE_SCHEDULE must be one of auto, single, sorted_batches, exact_batches, got '-1'",
            "ENGINE_BATCH_SIZE must be between 1 and 256, got -1",
            "ENGINE_EXACT_BATCH_MAX_PAIRS must be between 1 and 256, got -1",
            "ENGINE_EXACT_BATCH_MAX_TOKENS must be between 2 and 512, got -1",
            "ENGINE_EXACT_BATCH_MIN_GAIN_PERCENT must be between 0 and 90, got -1",
            "ENGINE_COST_PROBE_MS must be between 0 and 10000, got -1",
            "ENGINE_MAX_LENGTH must be between 1 and 8192, got -1",
            "ORT_INTRA_OP_THREADS must be between 1 and 64, got -1",
            "ORT_ALLOW_SPINNING must be true or false, got '-1'",
            "ENGINE_PARALLEL_RUNS must be between 1 and 16, got -1",
            "ENGINE_TAIL_INTRA_OP_THREADS must be between 1 and 64, got -1",
            "MAX_PASSAGES must be >= 1, got -1",
            "MAX_PASSAGE_CHARS must be >= 1, got -1",
            "MAX_QUERY_CHARS must be >= 1, got -1",
            "MAX_TOTAL_CHARS must be >= 1, got -1",
            "MAX_BATCH_REQUESTS must be >= 1, got -1",
            "LONG_DOCUMENTS must be one of truncate, window, got '-1'",
            "WINDOW_MAX_PER_PASSAGE must be >= 1, got -1",
            "WINDOW_OVERLAP_TOKENS must be between 0 and 256, got -1",
            "DEADLINE_POLICY must be one of fallback, error, got '-1'",
            "DEADLINE_MARGIN_MS must be >= 0, got -1",
            "SCORE_CACHE_MB must be between 0 and 8192, got -1.0",
            "FANOUT_MAX_WORKERS must be between 0 and 50, got -1",
            "FANOUT_TARGET_MS must be >= 10, got -1",
            "FANOUT_TOKEN_COST_US must be between 0.001 and 100000, got -1.0",
            "FANOUT_MEASURE_TOKEN_COST must be true or false, got '-1'",
            "FANOUT_CONNECT_TIMEOUT_SECONDS must be between 0.1 and 30, got -1.0",
            "AUTH_MODE must be one of none, bearer, got '-1'",
            "AUTH_TOKENS_MAX_AGE_SECONDS must be >= 0, got -1",
            "LOG_PAYLOADS must be true or false, got '-1'",
            "MODEL_S3_URI must look like s3://bucket/key.zip",
            "MODEL_SHA256 must be 64 hexadecimal characters",
        ]
    )


def test_values_above_the_bounds_are_reported_with_the_bounds() -> None:
    environ = {item.variable: "99999999" for item in DECLARED_SETTINGS} | {LAMBDA_MEMORY_SIZE: "99999999"}
    assert problems(environ) == "invalid settings: " + "; ".join(
        [
            "MODEL_S3_MAX_ATTEMPTS must be between 1 and 10, got 99999999",
            "MODEL_S3_CONNECT_TIMEOUT_SECONDS must be between 0.1 and 60, got 99999999.0",
            "MODEL_S3_READ_TIMEOUT_SECONDS must be between 0.1 and 300, got 99999999.0",
            "MODEL_LOAD_BUDGET_SECONDS must be between 0.5 and 900, got 99999999.0",
            "MODEL_LOAD_RETRY_SECONDS must be between 0 and 3600, got 99999999.0",
            "ENGINE_SCHEDULE must be one of auto, single, sorted_batches, exact_batches, got '99999999'",
            "ENGINE_BATCH_SIZE must be between 1 and 256, got 99999999",
            "ENGINE_EXACT_BATCH_MAX_PAIRS must be between 1 and 256, got 99999999",
            "ENGINE_EXACT_BATCH_MAX_TOKENS must be between 2 and 512, got 99999999",
            "ENGINE_EXACT_BATCH_MIN_GAIN_PERCENT must be between 0 and 90, got 99999999",
            "ENGINE_COST_PROBE_MS must be between 0 and 10000, got 99999999",
            "ENGINE_MAX_LENGTH must be between 1 and 8192, got 99999999",
            "ORT_INTRA_OP_THREADS must be between 1 and 64, got 99999999",
            "ORT_ALLOW_SPINNING must be true or false, got '99999999'",
            "ENGINE_PARALLEL_RUNS must be between 1 and 16, got 99999999",
            "ENGINE_TAIL_INTRA_OP_THREADS must be between 1 and 64, got 99999999",
            "LONG_DOCUMENTS must be one of truncate, window, got '99999999'",
            "WINDOW_OVERLAP_TOKENS must be between 0 and 256, got 99999999",
            "DEADLINE_POLICY must be one of fallback, error, got '99999999'",
            "SCORE_CACHE_MB must be between 0 and 8192, got 99999999.0",
            "FANOUT_MAX_WORKERS must be between 0 and 50, got 99999999",
            "FANOUT_TOKEN_COST_US must be between 0.001 and 100000, got 99999999.0",
            "FANOUT_MEASURE_TOKEN_COST must be true or false, got '99999999'",
            "FANOUT_CONNECT_TIMEOUT_SECONDS must be between 0.1 and 30, got 99999999.0",
            "AUTH_MODE must be one of none, bearer, got '99999999'",
            "LOG_PAYLOADS must be true or false, got '99999999'",
            "MODEL_S3_URI must look like s3://bucket/key.zip",
            "MODEL_SHA256 must be 64 hexadecimal characters",
        ]
    )


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"SCORE_CACHE_MB": "nan"}, "SCORE_CACHE_MB must be between 0 and 8192, got nan"),
        ({"MODEL_LOAD_RETRY_SECONDS": "inf"}, "MODEL_LOAD_RETRY_SECONDS must be between 0 and 3600, got inf"),
        ({"MODEL_S3_MAX_ATTEMPTS": "1.5"}, "MODEL_S3_MAX_ATTEMPTS must be an integer, got '1.5'"),
        (
            {"ENGINE_SCHEDULE": "Single"},
            "ENGINE_SCHEDULE must be one of auto, single, sorted_batches, exact_batches, got 'Single'",
        ),
        ({"MODEL_S3_URI": "s3://b/k.zip"}, "MODEL_SHA256 is required with MODEL_S3_URI"),
        (
            {"MODEL_S3_URI": "s3://bucket", "MODEL_SHA256": "g" * 64},
            "MODEL_S3_URI must look like s3://bucket/key.zip; MODEL_SHA256 must be 64 hexadecimal characters",
        ),
        ({"AUTH_MODE": "bearer"}, "AUTH_TOKENS_PARAMETER is required with AUTH_MODE=bearer"),
    ],
)
def test_single_problems_read_as_before(environ: dict[str, str], message: str) -> None:
    assert problems(environ) == f"invalid settings: {message}"


def test_the_example_in_the_docs_is_a_real_message() -> None:
    docs = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    example = problems({"MAX_PASSAGES": "0", "ENGINE_SCHEDULE": "fast"})
    assert f"`{example}`" in docs


# --- docs/configuration.md ----------------------------------------------------------------------------------


def test_the_configuration_page_shows_the_declaration() -> None:
    current = settings_table.CONFIGURATION_DOC.read_text(encoding="utf-8")
    assert settings_table.regenerate(current) == current, "run: python -m tools.settings_table --write"
    for variable in [*SETTINGS, *PLATFORM]:
        assert f"| `{variable}` |" in current


def test_the_table_tool_rewrites_a_stale_page_and_checks_it() -> None:
    stale = "intro\n<!-- generated: settings -->\nSTALE ROW\n<!-- end generated: settings -->\n"
    stale += "<!-- generated: platform-variables -->\n<!-- end generated: platform-variables -->\nend\n"
    fresh = settings_table.regenerate(stale)
    assert fresh.startswith("intro\n") and fresh.endswith("end\n") and "STALE" not in fresh
    assert "| `MODEL_S3_MAX_ATTEMPTS` | 4 | integer from 1 to 10 |" in fresh
    assert "| `POWERTOOLS_SERVICE_NAME` | reranker |" in fresh
    assert settings_table.regenerate(fresh) == fresh
    with pytest.raises(ValueError, match="missing"):
        settings_table.regenerate("no markers\n")
    checked = subprocess.run(
        [sys.executable, "-m", "tools.settings_table", "--check"],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout


# --- template.yaml: the function's environment ----------------------------------------------------------------


def possible_values(node: Any) -> list[tuple[str, str]]:
    """What one Environment.Variables entry can be: ("fixed", text), ("parameter", name) or ("unset", "")."""
    if isinstance(node, str):
        return [("fixed", str(node))]
    if isinstance(node, dict) and set(node) == {"Ref"}:
        return [("unset", "")] if node["Ref"] == "AWS::NoValue" else [("parameter", str(node["Ref"]))]
    if isinstance(node, dict) and set(node) == {"Fn::If"}:
        _condition, when_true, when_false = node["Fn::If"]
        return possible_values(when_true) + possible_values(when_false)
    raise AssertionError(f"teach this test to read {node!r}")


def admitted_values(parameter: dict[str, Any], item: DeclaredSetting) -> list[str]:
    """The non-empty values a stack parameter admits, where they can be listed (empty means: left unset)."""
    if "AllowedValues" in parameter:
        return [str(value) for value in parameter["AllowedValues"]]
    if "AllowedPattern" in parameter and item.kind == "integer":
        pattern = re.compile(str(parameter["AllowedPattern"]))
        return [str(number) for number in range(-1, 100_000) if pattern.fullmatch(str(number))]
    return [str(parameter["Default"])] if str(parameter.get("Default", "")) else []


def test_every_variable_the_template_sets_is_declared() -> None:
    undeclared = sorted(set(FUNCTION_ENVIRONMENT) - set(SETTINGS) - set(PLATFORM))
    assert not undeclared, f"declare these in reranker/config.py: {undeclared}"


@pytest.mark.parametrize("variable", sorted(FUNCTION_ENVIRONMENT))
def test_what_the_template_sets_when_nothing_is_chosen_is_the_declared_default(variable: str) -> None:
    values = possible_values(FUNCTION_ENVIRONMENT[variable])
    if len(values) > 1:  # chosen by a condition; its branches are checked below
        return
    [(kind, value)] = values
    deployed = str(PARAMETERS[value].get("Default", "")) if kind == "parameter" else value
    if variable in PLATFORM:
        assert deployed == PLATFORM[variable].shown_default
    else:
        assert read(SETTINGS[variable], deployed) == (SETTINGS[variable].default, [])


@pytest.mark.parametrize("variable", sorted(set(FUNCTION_ENVIRONMENT) & set(SETTINGS)))
def test_every_value_the_template_can_set_is_accepted(variable: str) -> None:
    item = SETTINGS[variable]
    refused = []
    for kind, value in possible_values(FUNCTION_ENVIRONMENT[variable]):
        candidates = admitted_values(PARAMETERS[value], item) if kind == "parameter" else [value]
        refused += [candidate for candidate in candidates if kind != "unset" and read(item, candidate)[1]]
    assert not refused, f"{variable}: the template can set {refused[:5]}, which the function refuses"


def test_the_layer_build_defaults_to_the_declared_model() -> None:
    name = "build_layer_for_settings_test"
    spec = importlib.util.spec_from_file_location(name, REPO / "layer" / "build_layer.py")
    assert spec and spec.loader
    build_layer = importlib.util.module_from_spec(spec)
    sys.modules[name] = build_layer  # its dataclasses look their module up
    try:
        spec.loader.exec_module(build_layer)
    finally:
        del sys.modules[name]
    assert Settings.model_name == build_layer.DEFAULT_MODEL_NAME


# --- variables the code reads outside config.py -----------------------------------------------------------


def test_every_variable_the_handler_reads_is_declared() -> None:
    read_by_name = re.compile(
        r'(?:environ|env)\.get\(\s*"([A-Z][A-Z0-9_]*)"|"((?:AWS|LAMBDA|POWERTOOLS)_[A-Z0-9_]+)"'
    )
    sources = sorted((REPO / "handler" / "reranker").glob("*.py"))
    found = {
        first or second
        for source in sources
        if source.name != "config.py"
        for first, second in read_by_name.findall(source.read_text(encoding="utf-8"))
    }
    assert found, "the pattern no longer finds the reads"
    assert not found - set(SETTINGS) - set(PLATFORM), "declare them in reranker/config.py"


def test_the_powertools_defaults_are_the_ones_the_code_falls_back_to() -> None:
    environ = {
        name: value for name, value in os.environ.items() if not name.startswith(("POWERTOOLS_", "AWS_"))
    }
    environ["PYTHONPATH"] = str(REPO / "handler")
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            "from reranker import observability as o; print(o.SERVICE_NAME, o.METRICS_NAMESPACE)",
        ],
        env=environ,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert shown == [
        PLATFORM["POWERTOOLS_SERVICE_NAME"].shown_default,
        PLATFORM["POWERTOOLS_METRICS_NAMESPACE"].shown_default,
    ]
