"""groundedit: grounding-oriented image-editing data engine and lean Bagel fine-tuning."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("groundedit")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"
