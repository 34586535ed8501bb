"""Identities and keys: unique, generated with `secrets`, kept 0600, never shown whole."""

from __future__ import annotations

import json
import stat

import pytest

from citynode.tools.errors import SecretsInvalid
from citynode.tools.identity import (
    Identity,
    eui_from_mac,
    generate_dev_eui,
    generate_key,
    load_secrets,
    mask,
    validate_secrets,
    write_private,
)

KEY = "2b7e151628aed2a6abf7158809cf4f3c"


def test_generated_keys_are_128_bit_hex_and_never_repeat():
    keys = {generate_key() for _ in range(200)}
    assert len(keys) == 200
    assert all(len(k) == 32 and int(k, 16) >= 0 for k in keys)


def test_generated_dev_eui_is_a_locally_administered_unicast_eui64():
    for _ in range(50):
        first = int(generate_dev_eui()[:2], 16)
        assert first & 0x02 and not first & 0x01


def test_eui64_from_the_board_mac_inserts_fffe_in_the_middle():
    assert eui_from_mac("24:0a:c4:e2:95:26") == "240ac4fffee29526"


def test_mask_shows_only_the_first_four_and_last_two_digits():
    assert mask(KEY) == "2b7e…3c"
    assert KEY not in mask(KEY)


def test_identity_repr_and_masked_form_hide_both_keys():
    ident = Identity.new("ac1f09fffe00c101", "modem")
    shown = repr(ident) + json.dumps(ident.masked())
    assert ident.app_key not in shown and ident.p2p_key not in shown
    assert ident.app_key != ident.p2p_key


def test_board_secrets_hold_only_the_keys_the_radio_uses():
    ident = Identity.new("ac1f09fffe00c101", "modem")
    assert set(ident.board_secrets("rak3172_lorawan")) == {"join_eui", "app_key"}
    assert set(ident.board_secrets("rak3172_p2p")) == {"p2p_key"}


def test_private_files_are_mode_0600_in_a_new_0700_folder(tmp_path):
    path = write_private(tmp_path / "keys" / "node.json", "{}")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_invalid_secret_is_reported_without_its_value():
    with pytest.raises(SecretsInvalid) as e:
        validate_secrets({"app_key": KEY[:-2] + "zz"}, "secrets.json")
    assert e.value.key == "app_key"
    assert KEY[:-2] not in str(e.value) and KEY[:-2] not in json.dumps(e.value.to_json())


def test_secrets_file_readable_by_others_earns_a_chmod_warning(tmp_path):
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({"app_key": KEY.upper(), "join_eui": "70B3D57ED005C17E"}))
    path.chmod(0o644)
    values, warnings = load_secrets(path)
    assert values == {"app_key": KEY, "join_eui": "70b3d57ed005c17e"}
    assert warnings and "chmod 600" in warnings[0]
    path.chmod(0o600)
    assert load_secrets(path)[1] == []
