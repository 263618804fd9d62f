"""What the SDK, the server and the profiles agree on about an event row.

Events may carry reserved columns next to the model's inputs and outputs (the SDK and the
server fill them in): ``_ts`` (event time), ``_latency_ms``, ``_client`` (caller id) and
``_error`` (the prediction call failed). A suite never monitors them as features.

>>> from watchkeeper.wire import RESERVED
>>> RESERVED
('_ts', '_latency_ms', '_client', '_error')
"""

from __future__ import annotations

TS, LATENCY, CLIENT, ERROR = "_ts", "_latency_ms", "_client", "_error"
RESERVED = (TS, LATENCY, CLIENT, ERROR)
