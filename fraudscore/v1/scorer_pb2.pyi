from fraudscore.v1 import transaction_pb2 as _transaction_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ScoreRequest(_message.Message):
    __slots__ = ("transaction", "model_version")
    TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    transaction: _transaction_pb2.Transaction
    model_version: int
    def __init__(self, transaction: _Optional[_Union[_transaction_pb2.Transaction, _Mapping]] = ..., model_version: _Optional[int] = ...) -> None: ...

class FeatureContribution(_message.Message):
    __slots__ = ("name", "share")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    name: str
    share: float
    def __init__(self, name: _Optional[str] = ..., share: _Optional[float] = ...) -> None: ...

class ScoreResponse(_message.Message):
    __slots__ = ("transaction_id", "reconstruction_error", "threshold", "is_anomaly", "top_features", "out_of_range_features", "model_version", "fraud_probability")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    RECONSTRUCTION_ERROR_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    IS_ANOMALY_FIELD_NUMBER: _ClassVar[int]
    TOP_FEATURES_FIELD_NUMBER: _ClassVar[int]
    OUT_OF_RANGE_FEATURES_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    FRAUD_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    reconstruction_error: float
    threshold: float
    is_anomaly: bool
    top_features: _containers.RepeatedCompositeFieldContainer[FeatureContribution]
    out_of_range_features: int
    model_version: int
    fraud_probability: float
    def __init__(self, transaction_id: _Optional[str] = ..., reconstruction_error: _Optional[float] = ..., threshold: _Optional[float] = ..., is_anomaly: bool = ..., top_features: _Optional[_Iterable[_Union[FeatureContribution, _Mapping]]] = ..., out_of_range_features: _Optional[int] = ..., model_version: _Optional[int] = ..., fraud_probability: _Optional[float] = ...) -> None: ...

class ScoreBatchRequest(_message.Message):
    __slots__ = ("transactions", "model_version")
    TRANSACTIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    transactions: _containers.RepeatedCompositeFieldContainer[_transaction_pb2.Transaction]
    model_version: int
    def __init__(self, transactions: _Optional[_Iterable[_Union[_transaction_pb2.Transaction, _Mapping]]] = ..., model_version: _Optional[int] = ...) -> None: ...

class RowResult(_message.Message):
    __slots__ = ("score", "error")
    SCORE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    score: ScoreResponse
    error: RowError
    def __init__(self, score: _Optional[_Union[ScoreResponse, _Mapping]] = ..., error: _Optional[_Union[RowError, _Mapping]] = ...) -> None: ...

class RowError(_message.Message):
    __slots__ = ("index", "transaction_id", "field", "reason")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    index: int
    transaction_id: str
    field: str
    reason: str
    def __init__(self, index: _Optional[int] = ..., transaction_id: _Optional[str] = ..., field: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ScoreBatchResponse(_message.Message):
    __slots__ = ("results", "scored", "failed")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    SCORED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[RowResult]
    scored: int
    failed: int
    def __init__(self, results: _Optional[_Iterable[_Union[RowResult, _Mapping]]] = ..., scored: _Optional[int] = ..., failed: _Optional[int] = ...) -> None: ...

class ScoreColumnsRequest(_message.Message):
    __slots__ = ("transaction_ids", "feature_names", "values", "rows", "model_version", "top_k")
    TRANSACTION_IDS_FIELD_NUMBER: _ClassVar[int]
    FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    transaction_ids: _containers.RepeatedScalarFieldContainer[str]
    feature_names: _containers.RepeatedScalarFieldContainer[str]
    values: bytes
    rows: int
    model_version: int
    top_k: int
    def __init__(self, transaction_ids: _Optional[_Iterable[str]] = ..., feature_names: _Optional[_Iterable[str]] = ..., values: _Optional[bytes] = ..., rows: _Optional[int] = ..., model_version: _Optional[int] = ..., top_k: _Optional[int] = ...) -> None: ...

class ScoreColumnsResponse(_message.Message):
    __slots__ = ("transaction_ids", "reconstruction_errors", "is_anomaly", "out_of_range_counts", "top_feature_indices", "top_feature_shares", "top_k", "feature_names", "threshold", "model_version", "errors", "scored", "failed", "fraud_probabilities")
    TRANSACTION_IDS_FIELD_NUMBER: _ClassVar[int]
    RECONSTRUCTION_ERRORS_FIELD_NUMBER: _ClassVar[int]
    IS_ANOMALY_FIELD_NUMBER: _ClassVar[int]
    OUT_OF_RANGE_COUNTS_FIELD_NUMBER: _ClassVar[int]
    TOP_FEATURE_INDICES_FIELD_NUMBER: _ClassVar[int]
    TOP_FEATURE_SHARES_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    SCORED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    FRAUD_PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    transaction_ids: _containers.RepeatedScalarFieldContainer[str]
    reconstruction_errors: bytes
    is_anomaly: bytes
    out_of_range_counts: bytes
    top_feature_indices: bytes
    top_feature_shares: bytes
    top_k: int
    feature_names: _containers.RepeatedScalarFieldContainer[str]
    threshold: float
    model_version: int
    errors: _containers.RepeatedCompositeFieldContainer[RowError]
    scored: int
    failed: int
    fraud_probabilities: bytes
    def __init__(self, transaction_ids: _Optional[_Iterable[str]] = ..., reconstruction_errors: _Optional[bytes] = ..., is_anomaly: _Optional[bytes] = ..., out_of_range_counts: _Optional[bytes] = ..., top_feature_indices: _Optional[bytes] = ..., top_feature_shares: _Optional[bytes] = ..., top_k: _Optional[int] = ..., feature_names: _Optional[_Iterable[str]] = ..., threshold: _Optional[float] = ..., model_version: _Optional[int] = ..., errors: _Optional[_Iterable[_Union[RowError, _Mapping]]] = ..., scored: _Optional[int] = ..., failed: _Optional[int] = ..., fraud_probabilities: _Optional[bytes] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "version", "threshold", "threshold_policy", "features", "metrics", "refused_versions", "loaded_versions", "runtime", "runtime_detail", "threshold_score", "second_stage", "normal_ranges", "envelope_limit")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_POLICY_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    REFUSED_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    LOADED_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_DETAIL_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_SCORE_FIELD_NUMBER: _ClassVar[int]
    SECOND_STAGE_FIELD_NUMBER: _ClassVar[int]
    NORMAL_RANGES_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    threshold: float
    threshold_policy: str
    features: _containers.RepeatedScalarFieldContainer[str]
    metrics: _containers.ScalarMap[str, float]
    refused_versions: _containers.RepeatedCompositeFieldContainer[RefusedVersion]
    loaded_versions: _containers.RepeatedScalarFieldContainer[int]
    runtime: str
    runtime_detail: str
    threshold_score: str
    second_stage: str
    normal_ranges: _containers.RepeatedCompositeFieldContainer[NormalRange]
    envelope_limit: float
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., threshold: _Optional[float] = ..., threshold_policy: _Optional[str] = ..., features: _Optional[_Iterable[str]] = ..., metrics: _Optional[_Mapping[str, float]] = ..., refused_versions: _Optional[_Iterable[_Union[RefusedVersion, _Mapping]]] = ..., loaded_versions: _Optional[_Iterable[int]] = ..., runtime: _Optional[str] = ..., runtime_detail: _Optional[str] = ..., threshold_score: _Optional[str] = ..., second_stage: _Optional[str] = ..., normal_ranges: _Optional[_Iterable[_Union[NormalRange, _Mapping]]] = ..., envelope_limit: _Optional[float] = ...) -> None: ...

class NormalRange(_message.Message):
    __slots__ = ("feature", "p01", "median", "p99")
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    P01_FIELD_NUMBER: _ClassVar[int]
    MEDIAN_FIELD_NUMBER: _ClassVar[int]
    P99_FIELD_NUMBER: _ClassVar[int]
    feature: str
    p01: float
    median: float
    p99: float
    def __init__(self, feature: _Optional[str] = ..., p01: _Optional[float] = ..., median: _Optional[float] = ..., p99: _Optional[float] = ...) -> None: ...

class RefusedVersion(_message.Message):
    __slots__ = ("version", "reason")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    version: int
    reason: str
    def __init__(self, version: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...
