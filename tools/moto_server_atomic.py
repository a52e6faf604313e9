"""moto_server with DynamoDB requests handled one at a time.

moto's server handles requests on threads without locking its DynamoDB backend, so two concurrent conditional
writes to one item can both pass their condition; real DynamoDB applies them atomically. The ledger's tests
race claims on purpose, so DynamoDB requests are serialised here (other services, SQS long polls among them,
stay concurrent). Same command line as moto_server.
"""

import sys
import threading

from moto import server
from moto.moto_server import werkzeug_app

_dynamodb = threading.Lock()
_dispatcher = werkzeug_app.DomainDispatcherApplication


class AtomicDynamoDB(_dispatcher):
    def __call__(self, environ, start_response):
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB"):
            with _dynamodb:
                return list(super().__call__(environ, start_response))
        return super().__call__(environ, start_response)


server.DomainDispatcherApplication = AtomicDynamoDB

if __name__ == "__main__":
    sys.exit(server.main())
