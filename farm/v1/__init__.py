"""Generated gRPC code of the farm API (``proto/farm/v1``); regenerate with ``python -m farm.proto_gen``."""
