"""The workers layer: Ray actors that hold the models (video, audio), their pools, cancel flags,
the Ray connection and the seeded noise. Imports io, models and domain."""
