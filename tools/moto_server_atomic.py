"""moto_server with DynamoDB requests handled one at a time, and SQS batch sends that keep their trace header.

moto's server handles requests on threads without locking its DynamoDB backend, so two concurrent conditional
writes to one item can both pass their condition; real DynamoDB applies them atomically. The ledger's tests
race claims on purpose, so DynamoDB requests are serialised here (other services, SQS long polls among them,
stay concurrent). moto keeps an SQS message's system attributes (`AWSTraceHeader`) from SendMessage only; real
SQS keeps them from SendMessageBatch too, which is how the functions send, so batch sends keep them here as well.
Same command line as moto_server.
"""

import sys
import threading

from moto import server
from moto.moto_server import werkzeug_app
from moto.sqs import models as sqs_models

_dynamodb = threading.Lock()
_dispatcher = werkzeug_app.DomainDispatcherApplication


class AtomicDynamoDB(_dispatcher):
    def __call__(self, environ, start_response):
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB"):
            with _dynamodb:
                return list(super().__call__(environ, start_response))
        return super().__call__(environ, start_response)


server.DomainDispatcherApplication = AtomicDynamoDB

_send_message_batch = sqs_models.SQSBackend.send_message_batch


def _send_message_batch_keeping_system_attributes(self, queue_name, entries):
    messages, failed = _send_message_batch(self, queue_name, entries)
    by_id = {e["Id"]: e for e in entries.values()}
    for m in messages:
        attributes = by_id.get(getattr(m, "user_id", None), {}).get("MessageSystemAttributes")
        if attributes:
            m.system_attributes = attributes
    return messages, failed


sqs_models.SQSBackend.send_message_batch = _send_message_batch_keeping_system_attributes

if __name__ == "__main__":
    sys.exit(server.main())
