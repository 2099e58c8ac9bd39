from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Safety(_message.Message):
    __slots__ = ("check_content", "mode")
    CHECK_CONTENT_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    check_content: bool
    mode: str
    def __init__(self, check_content: _Optional[bool] = ..., mode: _Optional[str] = ...) -> None: ...

class ReferenceImageGroup(_message.Message):
    __slots__ = ("type", "images", "tag", "audio")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    type: str
    images: _containers.RepeatedScalarFieldContainer[str]
    tag: str
    audio: str
    def __init__(self, type: _Optional[str] = ..., images: _Optional[_Iterable[str]] = ..., tag: _Optional[str] = ..., audio: _Optional[str] = ...) -> None: ...

class ReferenceVideo(_message.Message):
    __slots__ = ("type", "tag", "video")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    type: str
    tag: str
    video: str
    def __init__(self, type: _Optional[str] = ..., tag: _Optional[str] = ..., video: _Optional[str] = ...) -> None: ...

class Inputs(_message.Message):
    __slots__ = ("reference_images", "frame_images", "reference_videos", "mask")
    REFERENCE_IMAGES_FIELD_NUMBER: _ClassVar[int]
    FRAME_IMAGES_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_VIDEOS_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    reference_images: _containers.RepeatedCompositeFieldContainer[ReferenceImageGroup]
    frame_images: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Value]
    reference_videos: _containers.RepeatedCompositeFieldContainer[ReferenceVideo]
    mask: str
    def __init__(self, reference_images: _Optional[_Iterable[_Union[ReferenceImageGroup, _Mapping]]] = ..., frame_images: _Optional[_Iterable[_Union[_struct_pb2.Value, _Mapping]]] = ..., reference_videos: _Optional[_Iterable[_Union[ReferenceVideo, _Mapping]]] = ..., mask: _Optional[str] = ...) -> None: ...

class Settings(_message.Message):
    __slots__ = ("audio", "prompt_extend", "chunk_mode")
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    PROMPT_EXTEND_FIELD_NUMBER: _ClassVar[int]
    CHUNK_MODE_FIELD_NUMBER: _ClassVar[int]
    audio: bool
    prompt_extend: bool
    chunk_mode: str
    def __init__(self, audio: _Optional[bool] = ..., prompt_extend: _Optional[bool] = ..., chunk_mode: _Optional[str] = ...) -> None: ...

class VideoInferenceTask(_message.Message):
    __slots__ = ("task_type", "task_uuid", "output_type", "output_format", "output_quality", "webhook_url", "delivery_method", "upload_endpoint", "safety", "ttl", "include_cost", "inputs", "number_results", "model", "positive_prompt", "width", "height", "resolution", "duration", "settings", "seed", "priority")
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    TASK_UUID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TYPE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_QUALITY_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_URL_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_METHOD_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    SAFETY_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_COST_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    NUMBER_RESULTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    POSITIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    task_type: str
    task_uuid: str
    output_type: str
    output_format: str
    output_quality: int
    webhook_url: str
    delivery_method: str
    upload_endpoint: str
    safety: Safety
    ttl: int
    include_cost: bool
    inputs: Inputs
    number_results: int
    model: str
    positive_prompt: str
    width: int
    height: int
    resolution: str
    duration: float
    settings: Settings
    seed: int
    priority: int
    def __init__(self, task_type: _Optional[str] = ..., task_uuid: _Optional[str] = ..., output_type: _Optional[str] = ..., output_format: _Optional[str] = ..., output_quality: _Optional[int] = ..., webhook_url: _Optional[str] = ..., delivery_method: _Optional[str] = ..., upload_endpoint: _Optional[str] = ..., safety: _Optional[_Union[Safety, _Mapping]] = ..., ttl: _Optional[int] = ..., include_cost: _Optional[bool] = ..., inputs: _Optional[_Union[Inputs, _Mapping]] = ..., number_results: _Optional[int] = ..., model: _Optional[str] = ..., positive_prompt: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., resolution: _Optional[str] = ..., duration: _Optional[float] = ..., settings: _Optional[_Union[Settings, _Mapping]] = ..., seed: _Optional[int] = ..., priority: _Optional[int] = ...) -> None: ...

class TaskError(_message.Message):
    __slots__ = ("code", "message", "parameter", "task_uuid", "retryable", "retry_after_s")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PARAMETER_FIELD_NUMBER: _ClassVar[int]
    TASK_UUID_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_S_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    parameter: str
    task_uuid: str
    retryable: bool
    retry_after_s: float
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., parameter: _Optional[str] = ..., task_uuid: _Optional[str] = ..., retryable: _Optional[bool] = ..., retry_after_s: _Optional[float] = ...) -> None: ...

class SubmitRequest(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[VideoInferenceTask]
    def __init__(self, tasks: _Optional[_Iterable[_Union[VideoInferenceTask, _Mapping]]] = ...) -> None: ...

class TaskAck(_message.Message):
    __slots__ = ("task_type", "task_uuid")
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    TASK_UUID_FIELD_NUMBER: _ClassVar[int]
    task_type: str
    task_uuid: str
    def __init__(self, task_type: _Optional[str] = ..., task_uuid: _Optional[str] = ...) -> None: ...

class SubmitResponse(_message.Message):
    __slots__ = ("data", "errors")
    DATA_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    data: _containers.RepeatedCompositeFieldContainer[TaskAck]
    errors: _containers.RepeatedCompositeFieldContainer[TaskError]
    def __init__(self, data: _Optional[_Iterable[_Union[TaskAck, _Mapping]]] = ..., errors: _Optional[_Iterable[_Union[TaskError, _Mapping]]] = ...) -> None: ...

class GetResponseRequest(_message.Message):
    __slots__ = ("task_uuid",)
    TASK_UUID_FIELD_NUMBER: _ClassVar[int]
    task_uuid: str
    def __init__(self, task_uuid: _Optional[str] = ...) -> None: ...

class VideoResult(_message.Message):
    __slots__ = ("task_type", "task_uuid", "status", "video_uuid", "video_url", "seed", "cost", "progress", "result_index", "state", "upload_status", "webhook_status", "extended_prompt")
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    TASK_UUID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    VIDEO_UUID_FIELD_NUMBER: _ClassVar[int]
    VIDEO_URL_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_INDEX_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_STATUS_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_STATUS_FIELD_NUMBER: _ClassVar[int]
    EXTENDED_PROMPT_FIELD_NUMBER: _ClassVar[int]
    task_type: str
    task_uuid: str
    status: str
    video_uuid: str
    video_url: str
    seed: int
    cost: float
    progress: float
    result_index: int
    state: str
    upload_status: str
    webhook_status: str
    extended_prompt: str
    def __init__(self, task_type: _Optional[str] = ..., task_uuid: _Optional[str] = ..., status: _Optional[str] = ..., video_uuid: _Optional[str] = ..., video_url: _Optional[str] = ..., seed: _Optional[int] = ..., cost: _Optional[float] = ..., progress: _Optional[float] = ..., result_index: _Optional[int] = ..., state: _Optional[str] = ..., upload_status: _Optional[str] = ..., webhook_status: _Optional[str] = ..., extended_prompt: _Optional[str] = ...) -> None: ...

class TaskResponse(_message.Message):
    __slots__ = ("data", "errors")
    DATA_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    data: _containers.RepeatedCompositeFieldContainer[VideoResult]
    errors: _containers.RepeatedCompositeFieldContainer[TaskError]
    def __init__(self, data: _Optional[_Iterable[_Union[VideoResult, _Mapping]]] = ..., errors: _Optional[_Iterable[_Union[TaskError, _Mapping]]] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("task_uuid",)
    TASK_UUID_FIELD_NUMBER: _ClassVar[int]
    task_uuid: str
    def __init__(self, task_uuid: _Optional[str] = ...) -> None: ...

class ProgressEvent(_message.Message):
    __slots__ = ("task_uuid", "kind", "result_index", "queue_position", "chunks_done", "chunks_total", "frames_encoded", "frames_total", "message", "extra")
    TASK_UUID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    RESULT_INDEX_FIELD_NUMBER: _ClassVar[int]
    QUEUE_POSITION_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_DONE_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    FRAMES_ENCODED_FIELD_NUMBER: _ClassVar[int]
    FRAMES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    task_uuid: str
    kind: str
    result_index: int
    queue_position: int
    chunks_done: int
    chunks_total: int
    frames_encoded: int
    frames_total: int
    message: str
    extra: _struct_pb2.Struct
    def __init__(self, task_uuid: _Optional[str] = ..., kind: _Optional[str] = ..., result_index: _Optional[int] = ..., queue_position: _Optional[int] = ..., chunks_done: _Optional[int] = ..., chunks_total: _Optional[int] = ..., frames_encoded: _Optional[int] = ..., frames_total: _Optional[int] = ..., message: _Optional[str] = ..., extra: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class CancelRequest(_message.Message):
    __slots__ = ("task_uuid",)
    TASK_UUID_FIELD_NUMBER: _ClassVar[int]
    task_uuid: str
    def __init__(self, task_uuid: _Optional[str] = ...) -> None: ...

class AssetChunk(_message.Message):
    __slots__ = ("data", "content_type", "filename")
    DATA_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    content_type: str
    filename: str
    def __init__(self, data: _Optional[bytes] = ..., content_type: _Optional[str] = ..., filename: _Optional[str] = ...) -> None: ...

class AssetAck(_message.Message):
    __slots__ = ("asset_uuid", "size", "content_type")
    ASSET_UUID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    asset_uuid: str
    size: int
    content_type: str
    def __init__(self, asset_uuid: _Optional[str] = ..., size: _Optional[int] = ..., content_type: _Optional[str] = ...) -> None: ...
