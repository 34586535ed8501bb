"""The bridge's TOML config: every problem named by its key, secrets from env/files never shown, the
example config valid, and `citynode bridge --check`."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from citynode.cli.main import main
from citynode.config import ConfigError, Secret, load_config, parse_config
from citynode.core.pipeline import PipelineSettings
from citynode.sinks.sensorthings import SensorThingsSettings
from citynode.sources.chirpstack import ChirpStackSettings
from citynode.sources.tts import TTSSettings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ENV = {"OUT_PW": "output-secret-1", "CS_PW": "chirpstack-secret-2", "TTS_KEY": "NNSXS.tts-secret-3"}


@pytest.fixture
def doc(tmp_path) -> dict:
    """A minimal valid config as parsed TOML."""
    registry = tmp_path / "registry.toml"
    registry.write_text((EXAMPLES / "registry.toml").read_text())
    return {
        "input": {"chirpstack": {"host": "lns", "username": "bridge", "password": {"env": "CS_PW"}}},
        "output": {"host": "platform", "username": "bridge", "password": {"env": "OUT_PW"}},
        "outbox": {"path": str(tmp_path / "outbox.sqlite")},
        "registry": {"path": str(registry)},
    }


def problems(doc: dict, env: dict | None = None) -> dict[str, str]:
    with pytest.raises(ConfigError) as err:
        parse_config(doc, "bridge.toml", ENV if env is None else env)
    return dict(err.value.problems)


def with_(doc: dict, section: str, **values) -> dict:
    doc = copy.deepcopy(doc)
    table = doc
    for part in section.split("."):
        table = table.setdefault(part, {})
    table.update(values)
    return doc


def test_a_minimal_config_loads_with_defaults(doc):
    config = parse_config(doc, "bridge.toml", ENV)
    assert config.output.qos == 1 and config.output.port == 1883 and config.output.base_topic == "citynode"
    assert config.outbox.overflow == "drop_oldest" and config.log.format == "text"
    assert isinstance(config.pipeline, PipelineSettings) and config.pipeline.base_topic == "citynode"
    settings = config.input("chirpstack").settings()
    assert isinstance(settings, ChirpStackSettings) and settings.password == "chirpstack-secret-2"


def test_the_port_error_names_the_key_and_what_is_wrong(doc):
    with pytest.raises(ConfigError) as err:
        parse_config(with_(doc, "output", port=0), "bridge.toml", ENV)
    assert err.value.key == "output.port" and err.value.problem == "must be 1..65535, got 0"
    assert "output.port: must be 1..65535, got 0" in str(err.value)


def test_every_problem_is_reported_at_once(doc):
    got = problems(with_(with_(doc, "output", qos=0, inflight_window=70000), "outbox", overflow="drop_newest"))
    assert got["output.qos"].startswith("must be 1 or 2")
    assert got["output.inflight_window"] == "must be 1..65535, got 70000"
    assert "drop_oldest" in got["outbox.overflow"] and "drop_newest" in got["outbox.overflow"]


def test_a_wrong_type_is_named(doc):
    got = problems(with_(with_(doc, "output", tls="yes"), "input.chirpstack", port="1883"))
    assert got["output.tls"] == "must be true or false, got text"
    assert got["input.chirpstack.port"].startswith("must be a whole number")


def test_unknown_keys_and_sections_are_errors_so_a_typo_is_not_ignored(doc):
    doc = with_(doc, "output", hostname="x")
    doc["outputs"] = {}
    doc["input"]["chirpstak"] = {}
    got = problems(doc)
    assert got["output.hostname"].startswith("unknown key")
    assert got["outputs"].startswith("unknown section")
    assert got["input.chirpstak"].startswith("unknown input")


def test_at_least_one_input_is_required(doc):
    doc = copy.deepcopy(doc)
    del doc["input"]
    assert "input" in problems(doc)


def test_secrets_come_from_the_environment_and_are_never_shown(doc):
    config = parse_config(doc, "bridge.toml", ENV)
    assert isinstance(config.output.password, Secret) and config.output.password.reveal() == "output-secret-1"
    assert repr(config.output.password) == str(config.output.password) == "***"
    text = repr(config) + str(config.inputs) + repr(config.input("chirpstack").settings())
    assert not any(secret in text for secret in ENV.values())
    assert sorted(config.secret_values()) == sorted([ENV["OUT_PW"], ENV["CS_PW"]])
    assert config.output.password.origin == "env OUT_PW"


def test_a_missing_environment_variable_is_an_error_naming_it(doc):
    got = problems(doc, env={"CS_PW": "x"})
    assert got["output.password"] == "environment variable OUT_PW is not set"


def test_a_secret_file_is_read_without_its_trailing_newline(doc, tmp_path):
    (tmp_path / "pw").write_text("from-file\n")
    config = parse_config(with_(doc, "output", password={"file": str(tmp_path / "pw")}), "b", ENV)
    assert config.output.password.reveal() == "from-file"
    got = problems(with_(doc, "output", password={"file": str(tmp_path / "missing")}))
    assert got["output.password"].startswith("cannot read secret file")


def test_a_secret_path_the_os_refuses_is_a_problem_named_by_its_key(doc):
    got = problems(with_(doc, "output", password={"file": "/run/secrets/a\x00b"}))
    assert got["output.password"].startswith("cannot read secret file")
    got = problems(with_(doc, "output", tls=True, ca_file="/" + "x" * 300))  # longer than a file name may be
    assert got["output.ca_file"].startswith("file not found")


def test_a_plain_text_secret_works_but_is_warned_about(doc):
    config = parse_config(with_(doc, "output", password="inline"), "b", ENV)
    assert config.output.password.reveal() == "inline"
    assert any(w.startswith("output.password: a plain-text secret") for w in config.warnings)


def test_a_secret_in_another_shape_is_refused(doc):
    assert "output.password" in problems(with_(doc, "output", password={"vault": "x"}))


def test_anonymous_access_needs_an_explicit_opt_in(doc):
    doc = copy.deepcopy(doc)
    del doc["output"]["username"], doc["output"]["password"]
    assert problems(doc)["output.username"].startswith("is required")
    config = parse_config(with_(doc, "output", anonymous=True), "b", ENV)
    assert any("anonymous" in w for w in config.warnings)


def test_a_password_without_tls_is_warned_about(doc):
    config = parse_config(doc, "b", ENV)
    assert any(w.startswith("output.password: sent in clear text") for w in config.warnings)


def test_files_must_exist(doc):
    got = problems(with_(with_(doc, "output", tls=True, ca_file="/nonexistent/ca.pem"), "registry",
                         path="/nonexistent/reg.toml"))
    assert got["output.ca_file"] == "file not found: /nonexistent/ca.pem"
    assert got["registry.path"] == "file not found: /nonexistent/reg.toml"


def test_a_wildcard_in_the_base_topic_is_refused(doc):
    assert "output.base_topic" in problems(with_(doc, "output", base_topic="city/+"))


def test_a_source_settings_check_is_reported_under_its_section(doc):
    got = problems(with_(doc, "input.chirpstack", application_id="a/b"))
    assert "application_id" in got["input.chirpstack"]


def test_tts_needs_an_api_key_and_gets_it_from_the_environment(doc):
    doc = with_(doc, "input.tts", application_id="city-containers")
    assert problems(doc)["input.tts.api_key"].startswith("is required")
    config = parse_config(with_(doc, "input.tts", api_key={"env": "TTS_KEY"}), "b", ENV)
    settings = config.input("tts").settings()
    assert isinstance(settings, TTSSettings) and settings.password == ENV["TTS_KEY"]
    assert ENV["TTS_KEY"] in config.secret_values()


def test_pipeline_thresholds_are_range_checked_and_sensorthings_can_be_a_table(doc):
    assert problems(with_(doc, "pipeline", fill_collection_pct=200))["pipeline.fill_collection_pct"] == \
        "must be 0..125, got 200"
    config = parse_config(with_(doc, "pipeline", fiware=True, sensorthings={
        "version": "v1.0", "id_template": "{device_id}-{measurement}", "datastreams": {"tree-0001": {"vwc_pct": 7}}}),
        "b", ENV)
    assert config.pipeline.fiware is True
    assert config.pipeline.sensorthings == SensorThingsSettings(
        version="v1.0", id_template="{device_id}-{measurement}", datastreams={"tree-0001": {"vwc_pct": 7}})
    assert problems(with_(doc, "pipeline", unknown_devices="ignore"))["pipeline.unknown_devices"]


@pytest.mark.parametrize("version", ["#", "+", "a//b", "", "v1.1/"])
def test_a_sensorthings_version_that_is_not_a_plain_topic_prefix_is_refused(doc, version):
    got = problems(with_(doc, "pipeline", sensorthings={"version": version}))
    assert got["pipeline.sensorthings"].startswith("version must be a topic prefix")


def test_a_number_beyond_float_range_is_a_range_problem_not_a_crash(doc):
    got = problems(with_(doc, "bridge", tick_interval_s=10 ** 400))
    assert got["bridge.tick_interval_s"].startswith("must be") and got["bridge.tick_interval_s"].endswith("...")


def test_scale_out_needs_redis_and_cannot_share_a_serial_receiver(doc):
    doc = with_(doc, "bridge", shared_group="citynode")
    assert problems(doc)["dedup.redis_url"].startswith("is required with bridge.shared_group")
    doc = with_(with_(doc, "dedup", redis_url="redis://127.0.0.1:6390/0"), "input.serial", port="/dev/ttyUSB9")
    assert problems(doc)["input.serial"].startswith("one serial receiver cannot be shared")


def test_scale_out_gives_each_instance_its_own_client_id_and_a_shared_subscription(doc):
    config = parse_config(with_(with_(doc, "bridge", shared_group="grp"), "dedup", redis_url="redis://h:1/0"),
                          "b", ENV)
    settings = config.input("chirpstack").settings(instance="b", shared_group=config.bridge.shared_group)
    assert settings.shared_group == "grp" and settings.client_id.endswith("-b")
    assert not any(w.startswith("dedup.redis_url") for w in config.warnings)  # no password in it: no warning


def test_invalid_toml_is_a_config_error(tmp_path):
    (tmp_path / "b.toml").write_text("[output\nhost=1")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "b.toml", ENV)
    assert err.value.key == "config" and "not valid TOML" in err.value.problem


@pytest.mark.parametrize("text, fragment", [
    ("a = " + "[" * 5000 + "]" * 5000, "nested too deeply"),
    ("a = 1" + "0" * 5000, "not usable TOML"),  # beyond CPython's int/str conversion limit
])
def test_toml_that_python_cannot_hold_is_a_config_error(tmp_path, text, fragment):
    (tmp_path / "b.toml").write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "b.toml", ENV)
    assert err.value.key == "config" and fragment in err.value.problem


def example_config(tmp_path: Path) -> Path:
    """examples/bridge.toml with its /etc paths pointing at files that exist here."""
    (tmp_path / "ca.pem").write_text("")
    text = (EXAMPLES / "bridge.toml").read_text()
    for path in ("/etc/citynode/chirpstack-ca.pem", "/etc/citynode/platform-ca.pem"):
        text = text.replace(path, str(tmp_path / "ca.pem"))
    text = text.replace("/etc/citynode/registry.toml", str(EXAMPLES / "registry.toml"))
    text = text.replace("/var/lib/citynode/", str(tmp_path) + "/")
    (tmp_path / "bridge.toml").write_text(text)
    return tmp_path / "bridge.toml"


def test_the_example_config_is_valid_uses_no_plain_secrets_and_no_anonymous_access(tmp_path):
    env = {"CITYNODE_CHIRPSTACK_PASSWORD": "a1", "CITYNODE_TTS_API_KEY": "b2", "CITYNODE_OUTPUT_PASSWORD": "c3"}
    config = load_config(example_config(tmp_path), env)
    assert config.warnings == ()  # no plain-text secret, no anonymous access, no clear-text password
    assert [i.kind for i in config.inputs] == ["chirpstack", "tts"]
    assert config.output.tls and config.output.username and not config.output.anonymous
    assert sorted(config.secret_values()) == ["a1", "b2", "c3"]


def test_check_exits_0_for_a_valid_config_and_reports_the_registry(tmp_path, capsys, monkeypatch):
    for name, value in {"CITYNODE_CHIRPSTACK_PASSWORD": "a", "CITYNODE_TTS_API_KEY": "b",
                        "CITYNODE_OUTPUT_PASSWORD": "c"}.items():
        monkeypatch.setenv(name, value)
    assert main(["bridge", "--config", str(example_config(tmp_path)), "--check"]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "4 device(s)" in out


def test_check_exits_1_and_prints_each_problem_with_its_key(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CITYNODE_OUTPUT_PASSWORD", raising=False)
    path = example_config(tmp_path)
    path.write_text(path.read_text().replace("port = 8883\ntls = true\nca_file", "port = 0\ntls = true\nca_file", 1))
    assert main(["bridge", "--config", str(path), "--check"]) == 1
    err = capsys.readouterr().err
    assert "input.chirpstack.port: must be 1..65535, got 0" in err
    assert "output.password: environment variable CITYNODE_OUTPUT_PASSWORD is not set" in err


def test_check_exits_1_for_an_invalid_registry(tmp_path, capsys, monkeypatch):
    for name in ("CITYNODE_CHIRPSTACK_PASSWORD", "CITYNODE_TTS_API_KEY", "CITYNODE_OUTPUT_PASSWORD"):
        monkeypatch.setenv(name, "x")
    path = example_config(tmp_path)
    (tmp_path / "bad.csv").write_text("dev_eui,kind\nnot-an-eui,soil\n")
    path.write_text(path.read_text().replace(str(EXAMPLES / "registry.toml"), str(tmp_path / "bad.csv")))
    assert main(["bridge", "--config", str(path), "--check"]) == 1
    assert "dev_eui" in capsys.readouterr().err
