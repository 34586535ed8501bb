"""Bridge logging: JSON lines or text, and secrets masked wherever they would appear."""

from __future__ import annotations

import io
import json
import logging

import pytest

from citynode.logs import SecretMaskFilter, configure_logging, make_handler


@pytest.fixture
def logger():
    log = logging.getLogger("citynode.test_logs")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    yield log
    for h in list(log.handlers):
        log.removeHandler(h)


def capture(logger: logging.Logger, fmt: str, secrets=()) -> io.StringIO:
    stream = io.StringIO()
    logger.addHandler(make_handler(fmt, secrets, stream))
    return stream


def test_json_format_writes_one_object_per_line_with_level_logger_message_and_extras(logger):
    out = capture(logger, "json")
    logger.warning("output: connected to %s", "broker", extra={"outbox_depth": 3})
    logger.info("second")
    lines = out.getvalue().splitlines()
    first = json.loads(lines[0])
    assert first["level"] == "WARNING" and first["logger"] == "citynode.test_logs"
    assert first["msg"] == "output: connected to broker" and first["outbox_depth"] == 3
    assert first["ts"].endswith("+00:00")
    assert json.loads(lines[1])["msg"] == "second"


def test_text_format_is_one_readable_line(logger):
    out = capture(logger, "text")
    logger.error("outbox full", extra={"outbox_depth": 9})
    line = out.getvalue().strip()
    assert " ERROR citynode.test_logs: outbox full outbox_depth=9" in line and line.endswith("outbox_depth=9")


def test_a_secret_is_masked_in_the_message_the_arguments_and_extras(logger):
    out = capture(logger, "json", ["hunter2-pw"])
    logger.warning("connecting with password %s", "hunter2-pw", extra={"url": "redis://u:hunter2-pw@h"})
    text = out.getvalue()
    assert "hunter2-pw" not in text
    entry = json.loads(text)
    assert entry["msg"] == "connecting with password ***" and entry["url"] == "redis://u:***@h"


def test_a_secret_is_masked_in_exception_tracebacks(logger):
    out = capture(logger, "text", ["s3cr3t/+value"])
    try:
        raise ValueError("bad login s3cr3t/+value and url-encoded s3cr3t%2F%2Bvalue")
    except ValueError:
        logger.exception("login failed")
    text = out.getvalue()
    assert "s3cr3t" not in text and "ValueError: bad login *** and url-encoded ***" in text


def test_a_longer_secret_containing_a_shorter_one_is_masked_whole():
    f = SecretMaskFilter(["abc", "abcdef"])
    assert f.mask("key abcdef and abc") == "key *** and ***"


def test_empty_secrets_mask_nothing():
    assert SecretMaskFilter(["", ""]).mask("nothing to hide") == "nothing to hide"


def test_configure_logging_replaces_root_handlers_and_sets_the_level():
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    stream = io.StringIO()
    try:
        handler = configure_logging("warning", "json", ["pw-123456"], stream)
        assert root.handlers == [handler] and root.level == logging.WARNING
        logging.getLogger("citynode.x").info("hidden")
        logging.getLogger("citynode.x").warning("token pw-123456")
        assert [json.loads(line)["msg"] for line in stream.getvalue().splitlines()] == ["token ***"]
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def test_an_unknown_format_is_refused():
    with pytest.raises(ValueError):
        make_handler("xml")
