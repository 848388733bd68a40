"""Error replies of the OTLP/HTTP receiver: a ``google.rpc.Status`` message, as the OTLP/HTTP specification asks of
every 4xx and 5xx response, in the request's encoding (protobuf, or proto3 JSON).

The type is built when the module is imported from its published wire format (``code`` 1, ``message`` 2; the
``details`` are not sent) by ``protobuf_types``, as the remote_write types are.
"""

from __future__ import annotations

import json

from fastapi import HTTPException, Response
from google.protobuf import json_format

from engine.adapters.protobuf_types import Field, message_types

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

# google.rpc.Code of each HTTP status the receiver answers with (the collector's own receiver maps them so).
_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 413: 3, 415: 3, 422: 3, 429: 14, 500: 13, 502: 14, 503: 14, 504: 14}
_UNKNOWN = 2


Status = message_types(
    "google.rpc", {"Status": [("code", 1, Field.TYPE_INT32, False, ""), ("message", 2, Field.TYPE_STRING, False, "")]}
)["Status"]


def status_reply(error: HTTPException, media: str) -> Response:
    """``error`` as a Status in the encoding of the request's ``media`` type (JSON unless protobuf), its headers
    kept."""
    detail = error.detail if isinstance(error.detail, str) else json.dumps(error.detail)
    status = Status(code=_CODES.get(error.status_code, _UNKNOWN), message=detail)
    if media == PROTOBUF:
        body, media_type = status.SerializeToString(), PROTOBUF
    else:
        body, media_type = json_format.MessageToJson(status, indent=None).encode(), JSON
    return Response(body, status_code=error.status_code, media_type=media_type, headers=error.headers)
