"""The render layer: turning a task into chunk work, conditioning, stitching and finishing
(stitch, resize, encode) a result. Imports workers, io, models and domain."""
