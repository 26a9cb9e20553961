"""The single contract between rolecall's controller and its workers.

Every message (job envelope, events), every document (baseline, instance and run records,
poison records) and every storage name is defined here and nowhere else.
"""

from rolecall import __version__
from rolecall.schemas.agents import AgentPin, AgentRelease
from rolecall.schemas.base import SCHEMA_VERSION, utcnow
from rolecall.schemas.baseline import Baseline, RebootPolicy, Step
from rolecall.schemas.codec import (
    MAX_MESSAGE_BYTES,
    decode_document,
    decode_message,
    encode_document,
    encode_message,
)
from rolecall.schemas.events import Completion, EventBatch, Hello, Outcome
from rolecall.schemas.jobs import (
    EnvVar,
    Execution,
    Interpreter,
    JobEnvelope,
    PayloadKind,
    PayloadRef,
    Signature,
    Target,
)
from rolecall.schemas.names import Names, name_key
from rolecall.schemas.records import InstanceRecord, InstanceState, PoisonRecord
from rolecall.schemas.runs import RunMode, RunRecord, RunState, TargetResult, TargetState

__all__ = [
    "MAX_MESSAGE_BYTES",
    "SCHEMA_VERSION",
    "AgentPin",
    "AgentRelease",
    "Baseline",
    "Completion",
    "EnvVar",
    "EventBatch",
    "Execution",
    "Hello",
    "InstanceRecord",
    "InstanceState",
    "Interpreter",
    "JobEnvelope",
    "Names",
    "Outcome",
    "PayloadKind",
    "PayloadRef",
    "PoisonRecord",
    "RebootPolicy",
    "RunMode",
    "RunRecord",
    "RunState",
    "Signature",
    "Step",
    "Target",
    "TargetResult",
    "TargetState",
    "__version__",
    "decode_document",
    "decode_message",
    "encode_document",
    "encode_message",
    "name_key",
    "utcnow",
]
