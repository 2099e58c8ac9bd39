"""Where weights come from by default (no heavy imports, so the driver can read it cheaply)."""

#: Hub id of the default real video weights (Wan 2.1 text-to-video, 1.3B, diffusers layout).
DEFAULT_WAN_WEIGHTS = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"

#: Hub id of the default real audio weights.
DEFAULT_STABLE_AUDIO_WEIGHTS = "stabilityai/stable-audio-open-1.0"

#: Seed of the embedded tiny models' random weights.
TINY_SEED = 0
