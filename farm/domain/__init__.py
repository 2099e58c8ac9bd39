"""The domain layer: the task and its rules, limits, errors, records and the chunk planner.

Pure Python (numpy at most): no torch, Ray, gRPC or aiohttp, so every other layer, the gateway
included, can import it cheaply. Layers above: io and models, workers, render, scheduler, gateway.
"""
