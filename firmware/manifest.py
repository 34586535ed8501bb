# Freeze the citynode node into a custom MicroPython image: frozen bytecode runs from flash and costs no
# RAM for the code itself.
#   cd micropython/ports/esp32
#   make BOARD=ESP32_GENERIC BOARD_VARIANT=SPIRAM FROZEN_MANIFEST=/path/to/citynode/firmware/manifest.py
# Then only main.py, config.json and secrets.json go on the filesystem (`citynode flash --frozen`).
include("$(PORT_DIR)/boards/manifest.py")

package("citynode_fw", base_path=".")
package(
    "citynode_codec",
    files=("__init__.py", "_tables.py", "codec.py", "cbor.py", "crc.py", "p2p.py"),
    base_path="../codecs",
)
require("lora-sync")
require("lora-sx126x")
