"""citynode host side: the bridge, the command-line tools and the emulators."""

__version__ = "0.1.0"
