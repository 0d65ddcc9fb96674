"""The encoder node: ``package(config, ladder) -> Manifest`` (packager.api, packager.pipeline) with its configs
(packager.config); the per-title ladder (packager.ladder), the rate-quality study (packager.study) and the live
sender (packager.live_send) build on it. ``bbmr-package`` (packager.cli) only turns flags into configs."""

from packager.api import package
from packager.config import AutoLadder, PackageConfig

__all__ = ["AutoLadder", "PackageConfig", "package"]
