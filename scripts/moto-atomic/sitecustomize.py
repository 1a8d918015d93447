"""Makes moto_server's DynamoDB writes atomic, as DynamoDB's are.

moto_server answers requests on several threads, and its DynamoDB backend checks a write's
condition and then applies the write without a lock: two conditional claims of the same key
that arrive together can both succeed, which DynamoDB never allows. The bridge's exactly-once
tests race exactly such claims, so against plain moto they fail now and then for moto's sake.

Python imports this module at start-up when its folder is on PYTHONPATH (tests/support/moto.rs
and scripts/loadtest put it there); it wraps every write of the backend in one lock. Reads stay
concurrent; SQS and the other services are untouched.
"""

import functools
import threading

_LOCK = threading.RLock()


def _serialized(method):
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with _LOCK:
            return method(*args, **kwargs)

    return wrapper


try:
    from moto.dynamodb.models import DynamoDBBackend
except ImportError:  # another Python program on this PYTHONPATH: nothing to do
    DynamoDBBackend = None

if DynamoDBBackend is not None:
    for _name in (
        "put_item",
        "update_item",
        "delete_item",
        "transact_write_items",
        "batch_write_item",
    ):
        _method = getattr(DynamoDBBackend, _name, None)
        if _method is not None:
            setattr(DynamoDBBackend, _name, _serialized(_method))
