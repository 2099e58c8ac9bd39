"""The io layer: codecs and the encoder, media fetch and decode, the URL guard, delivery and the
artifact store. Imports only ``farm.domain`` (and PyAV, aiohttp)."""
