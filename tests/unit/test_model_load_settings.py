"""The settings that bound the S3 model load at init, and the later retry: defaults, fractions, bad values."""

from __future__ import annotations

import pytest

from reranker.config import Settings, SettingsError


def test_defaults_keep_the_init_under_lambdas_ten_seconds() -> None:
    settings = Settings.from_env({})
    assert settings.model_load_budget_seconds == 8.0
    assert settings.model_load_retry_seconds == 30.0
    assert settings.model_s3_connect_timeout_seconds + settings.model_s3_read_timeout_seconds < 8.0


def test_fractions_of_a_second_are_accepted() -> None:
    settings = Settings.from_env(
        {
            "MODEL_LOAD_BUDGET_SECONDS": "2.5",
            "MODEL_LOAD_RETRY_SECONDS": "0",
            "MODEL_S3_CONNECT_TIMEOUT_SECONDS": "0.5",
            "MODEL_S3_READ_TIMEOUT_SECONDS": "1.5",
        }
    )
    assert (settings.model_load_budget_seconds, settings.model_load_retry_seconds) == (2.5, 0.0)
    assert (settings.model_s3_connect_timeout_seconds, settings.model_s3_read_timeout_seconds) == (0.5, 1.5)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon", "1e400"])
def test_every_bad_value_is_reported_at_once(value: str) -> None:
    names = [
        "MODEL_LOAD_BUDGET_SECONDS",
        "MODEL_LOAD_RETRY_SECONDS",
        "MODEL_S3_CONNECT_TIMEOUT_SECONDS",
        "MODEL_S3_READ_TIMEOUT_SECONDS",
        "SCORE_CACHE_MB",
    ]
    if value == "0":  # a retry interval of 0 and a cache of 0 MB (off) are valid
        names = [name for name in names if name not in ("MODEL_LOAD_RETRY_SECONDS", "SCORE_CACHE_MB")]
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(dict.fromkeys(names, value))
    for name in names:
        assert name in caught.value.public_message
