"""The YAML configuration and its ${VAR:default} interpolation (services/config.py)."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from services.config import (AGENCIES, BROKER, BUS_URI, CLOCK_SKEW_SECONDS, CONTROL_URI, CONFIG_ENV_VAR, KEYS, KEYS_DIR,
                             MAX_MESSAGE_BYTES, PROTOCOL, VALIDITY_DAYS, ConfigError, agency_codes,
                             load_config, protocol_setting)
from services.protocol.verify import DEFAULT_CLOCK_SKEW, DEFAULT_MAX_MESSAGE_BYTES

SHIPPED_AGENCIES = ["medical_security", "public_security", "procuratorate", "court", "health",
                    "finance", "joint_office"]


def write_config(tmp_path, body: str, name: str = "cluebus.yaml"):
    path = tmp_path / name
    path.write_text("AGENCIES:\n  medical_security: {name: MSB}\n  public_security: {name: PSB}\n"
                    + textwrap.dedent(body), encoding="utf-8")
    return path


def value_of(tmp_path, scalar: str, environ: dict):
    """What ``VALUE: <scalar>`` loads as under ``environ``."""
    return load_config(write_config(tmp_path, f"VALUE: {scalar}\n"), environ=environ)["VALUE"]


def _strings(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


# -- the shipped default -----------------------------------------------------------------------
def test_shipped_default_loads_with_no_environment():
    config = load_config(environ={})
    assert agency_codes(config) == SHIPPED_AGENCIES
    assert config[AGENCIES]["medical_security"]["name_zh"] == "医疗保障局"
    assert config[BROKER][BUS_URI] == "amqp://127.0.0.1:5672/cluebus"  # no password in configuration
    assert config[BROKER][CONTROL_URI] == "amqp://127.0.0.1:5672/cluebus.{agency}.control"
    assert config[KEYS_DIR] == "./var/keys"
    assert config[KEYS][VALIDITY_DAYS] == 730
    assert not [s for s in _strings(config) if "${" in s], "unresolved references"


def test_shipped_protocol_settings_match_the_verifier_defaults():
    config = load_config(environ={})
    assert protocol_setting(config, MAX_MESSAGE_BYTES) == DEFAULT_MAX_MESSAGE_BYTES == 1048576
    assert protocol_setting(config, CLOCK_SKEW_SECONDS) == DEFAULT_CLOCK_SKEW.total_seconds() == 300
    assert type(protocol_setting(config, MAX_MESSAGE_BYTES)) is int


def test_environment_overrides_the_shipped_default():
    config = load_config(environ={"CLUEBUS_MAX_MESSAGE_BYTES": "2048", "CLUEBUS_CLOCK_SKEW_SECONDS": "60",
                                  "CLUEBUS_BUS_URI": "amqps://mq.gov.internal:5671/cluebus"})
    assert config[PROTOCOL][MAX_MESSAGE_BYTES] == 2048
    assert config[PROTOCOL][CLOCK_SKEW_SECONDS] == 60
    assert config[BROKER][BUS_URI] == "amqps://mq.gov.internal:5671/cluebus"


def test_load_config_reads_os_environ_by_default(monkeypatch):
    monkeypatch.delenv(CONFIG_ENV_VAR, raising=False)
    monkeypatch.setenv("CLUEBUS_KEYS_DIR", "/srv/cluebus/keys")
    assert load_config()[KEYS_DIR] == "/srv/cluebus/keys"


# -- ${VAR:default} ----------------------------------------------------------------------------
@pytest.mark.parametrize("scalar, environ, expected", [
    ("${X:fallback}", {"X": "from-env"}, "from-env"),
    ("${X:fallback}", {}, "fallback"),
    ("${X}", {"X": "from-env"}, "from-env"),
    ("${X:}", {}, ""),
    ("${X:fallback}", {"X": ""}, ""),                 # set but empty still wins over the default
    ("'${X:a b c}'", {}, "a b c"),
    ("${X:/var/lib/cluebus}", {}, "/var/lib/cluebus"),
    ("plain text", {"X": "unused"}, "plain text"),
    ("$X", {"X": "unused"}, "$X"),                    # only ${...} is a reference
])
def test_strings(tmp_path, scalar, environ, expected):
    assert value_of(tmp_path, scalar, environ) == expected


@pytest.mark.parametrize("scalar, environ, expected", [
    ("${N:300}", {}, 300),
    ("${N:300}", {"N": "42"}, 42),
    ("${N}", {"N": "1048576"}, 1048576),
    ("${B:true}", {}, True),
    ("${B:true}", {"B": "false"}, False),
    ("${B:false}", {"B": "true"}, True),
    ("${N:-5}", {}, -5),
])
def test_bare_reference_keeps_yaml_types(tmp_path, scalar, environ, expected):
    value = value_of(tmp_path, scalar, environ)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("scalar, environ, expected", [
    ("amqp://${U:guest}:${P:guest}@${H:localhost}:${PORT:5672}/", {}, "amqp://guest:guest@localhost:5672/"),
    ("amqp://${U:guest}:${P:guest}@${H:localhost}:${PORT:5672}/", {"H": "mq", "PORT": "5671"},
     "amqp://guest:guest@mq:5671/"),
    ("${DIR:./var}/keys", {}, "./var/keys"),
    ("${DIR:./var}/keys", {"DIR": "/data"}, "/data/keys"),
    ("limit ${N:300}", {}, "limit 300"),              # embedded: stays a string
    ("${A:1}${B:2}", {}, "12"),
])
def test_references_embedded_in_longer_strings(tmp_path, scalar, environ, expected):
    assert value_of(tmp_path, scalar, environ) == expected


@pytest.mark.parametrize("scalar", ["${MISSING}", "prefix-${MISSING}-suffix", "${SET:x}/${MISSING}"])
def test_unset_variable_without_default_is_an_error(tmp_path, scalar):
    with pytest.raises(ConfigError) as info:
        value_of(tmp_path, scalar, {"SET": "1"})
    assert "MISSING" in str(info.value)


def test_references_in_nested_mappings_and_lists(tmp_path):
    path = write_config(tmp_path, """
        PROTOCOL:
          MAX_MESSAGE_BYTES: ${SIZE:1048576}
          LIST: ["${A:a}", "${B:2}", "x-${C:c}"]
        """)
    config = load_config(path, environ={"B": "3"})
    assert config[PROTOCOL] == {"MAX_MESSAGE_BYTES": 1048576, "LIST": ["a", 3, "x-c"]}


@pytest.mark.parametrize("value", ["@admin", "[unclosed", "*alias", "%percent", "`tick"])
def test_environment_value_that_is_not_yaml(tmp_path, value):
    try:
        loaded = value_of(tmp_path, "${X:default}", {"X": value})
    except ConfigError:
        return  # an acceptable answer
    assert loaded == value  # the other acceptable answer: keep the text


# -- choosing the file -------------------------------------------------------------------------
def test_cluebus_config_environment_variable(tmp_path):
    path = write_config(tmp_path, "KEYS_DIR: ${CLUEBUS_KEYS_DIR:/etc/cluebus/keys}\n")
    config = load_config(environ={CONFIG_ENV_VAR: str(path)})
    assert agency_codes(config) == ["medical_security", "public_security"]
    assert config[KEYS_DIR] == "/etc/cluebus/keys"


def test_cluebus_config_from_os_environ(tmp_path, monkeypatch):
    path = write_config(tmp_path, "")
    monkeypatch.setenv(CONFIG_ENV_VAR, str(path))
    assert agency_codes(load_config()) == ["medical_security", "public_security"]


def test_explicit_path_wins_over_cluebus_config(tmp_path):
    chosen = write_config(tmp_path, "WHICH: chosen\n", "chosen.yaml")
    ignored = write_config(tmp_path, "WHICH: ignored\n", "ignored.yaml")
    assert load_config(chosen, environ={CONFIG_ENV_VAR: str(ignored)})["WHICH"] == "chosen"


@pytest.mark.parametrize("content", [
    "AGENCIES: [unclosed\n",          # not YAML
    "- just\n- a list\n",             # not a mapping
    "BROKER: {}\n",                   # no agencies
    "AGENCIES: {}\n",
    "",
])
def test_bad_configuration_files(tmp_path, content):
    path = tmp_path / "bad.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError):
        load_config(path, environ={})


def test_missing_configuration_file(tmp_path):
    with pytest.raises(ConfigError):
        load_config(tmp_path / "absent.yaml", environ={})
    with pytest.raises(ConfigError):
        load_config(environ={CONFIG_ENV_VAR: str(tmp_path / "absent.yaml")})
