"""Field tools: what `citynode flash`, `provision`, `calibrate` and `monitor` are made of.

One module per concern, each usable on its own and from tests:

  errors.py       typed errors a technician can act on (what went wrong + what to do)
  identity.py     DevEUI and keys: generation with `secrets`, masking, 0600 key files, secrets.json checks
  board_link.py   the serial port and the programs that talk over it (mpremote, esptool), as argument lists
  firmware.py     the node firmware seen from the host: its config schema (reused), pin maps, the cached build
  deploy.py       the compiled app onto the board, copying only files whose SHA-256 differs
  flashing.py     the one-command pipeline: firmware, app, config, secrets, then one proven wake cycle
  logparse.py     the node's `[cn] ...` console lines, with uplink and downlink payloads decoded
  sitesheet.py    the CSV sheet of sites for bulk provisioning
  keystore.py     per-device identities kept 0600 across runs, and the resume state of a bulk run
  provisioning.py one node: identity (modem DevEUI, keys made once), site config, board, outputs
  outputs.py      what the bridge and the network servers import: registry, TTS and ChirpStack files
  calibration.py  soil probe and container calibration: stability checks and the board-side routines
  console.py      the serial console behind `citynode monitor`, reconnecting when the board resets
  render.py       rich text for people, one JSON document for scripts
"""

from .errors import ToolError

__all__ = ["ToolError"]
