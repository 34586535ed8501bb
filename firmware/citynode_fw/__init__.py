# citynode node firmware (MicroPython). See firmware/README.md for the layout and the contracts between
# the parts: app/ (pure node logic), drivers/ (one sensor per file), radio/ (one backend per file),
# hal/ (one hardware layer per target).
VERSION = '1.0.0'
