from ganscan.detectors.registry import (  # noqa: F401
    DetectorConfig,
    build_detector,
    get_config,
    list_detectors,
    load_detector,
    register_detector,
)
