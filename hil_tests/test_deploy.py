"""Deploying the node with mpremote, as a technician does: the build, config.json and secrets.json."""


def test_deployed_files_match_the_build_by_sha256(board, deploy):
    deployed = deploy("soil")
    names = sorted(deployed["files"])
    got = board.mpremote("sha256sum", *(":" + name for name in names)).stdout.split()
    hashes = dict(zip(got[1::3], got[2::3], strict=True))  # "sha256sum :<name>" then the digest, per file
    assert {name: hashes.get(":" + name) for name in names} == {n: deployed["files"][n]["sha256"] for n in names}


def test_deploying_again_copies_nothing_that_did_not_change(board, deploy, firmware):
    deploy("soil")
    build, manifest = firmware
    again = board.mpremote("cp", "-r", str(build / "lib"), str(build / "main.py"), ":").stdout
    assert again.count("Up to date: ") == len(manifest["files"])  # mpremote compares sha256 first


def test_the_deployed_firmware_imports_on_the_board(board, deploy, firmware):
    deploy("soil")
    out = board.mpremote("exec", "import citynode_fw, citynode_codec; print(citynode_fw.VERSION)").stdout
    assert out.strip() == firmware[1]["version"]
