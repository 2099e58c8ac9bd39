"""The gateway layer: the gRPC and JSON/REST faces, auth, config and metrics. It validates,
persists, hands tasks to the scheduler, answers and streams progress; it never holds a frame."""
