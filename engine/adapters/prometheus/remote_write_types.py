"""The protobuf message types of remote_write that the engine reads: 1.0's ``prometheus.WriteRequest`` and 2.0's
``io.prometheus.write.v2.Request``, with only the fields the engine uses.

The types are built when the module is imported, from the published wire format (``protobuf_types``). Fields left
out (1.0's metadata, exemplars and native histograms; 2.0's histograms, exemplars, metadata and created timestamp)
are unknown fields to the parser, skipped as protobuf's rules require. Both files are proto3, as upstream's are.
"""

from __future__ import annotations

from engine.adapters.protobuf_types import Field, message_types

_V1 = message_types(
    "prometheus",
    {
        "WriteRequest": [("timeseries", 1, Field.TYPE_MESSAGE, True, "TimeSeries")],
        "TimeSeries": [
            ("labels", 1, Field.TYPE_MESSAGE, True, "Label"),
            ("samples", 2, Field.TYPE_MESSAGE, True, "Sample"),
        ],
        "Label": [("name", 1, Field.TYPE_STRING, False, ""), ("value", 2, Field.TYPE_STRING, False, "")],
        "Sample": [("value", 1, Field.TYPE_DOUBLE, False, ""), ("timestamp", 2, Field.TYPE_INT64, False, "")],
    },
)
_V2 = message_types(
    "io.prometheus.write.v2",
    {
        # Fields 1 to 3 are reserved upstream, so that a 1.0 body read as 2.0 is an empty request.
        "Request": [
            ("symbols", 4, Field.TYPE_STRING, True, ""),
            ("timeseries", 5, Field.TYPE_MESSAGE, True, "TimeSeries"),
        ],
        "TimeSeries": [
            ("labels_refs", 1, Field.TYPE_UINT32, True, ""),
            ("samples", 2, Field.TYPE_MESSAGE, True, "Sample"),
        ],
        "Sample": [("value", 1, Field.TYPE_DOUBLE, False, ""), ("timestamp", 2, Field.TYPE_INT64, False, "")],
    },
)

WriteRequest = _V1["WriteRequest"]
TimeSeries = _V1["TimeSeries"]
Label = _V1["Label"]
Sample = _V1["Sample"]
RequestV2 = _V2["Request"]
TimeSeriesV2 = _V2["TimeSeries"]
SampleV2 = _V2["Sample"]
