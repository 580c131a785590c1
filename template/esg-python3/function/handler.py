"""An esg-python3 handler.

handle_batch receives up to ESG_MAX_BATCH_SIZE events and returns one result
per event, in the same order. A result is a dict with statusCode, body and
headers, or a plain body (str, bytes, or a dict/list sent as JSON). Put an
exception object in the list to fail that one event. Define handle(event,
context) instead to take one event at a time.

event.body is bytes; event.headers, event.method, event.query, event.path
are as in the OpenFaaS python3-http template.
"""

import json


def handle_batch(events, context):
    results = []
    for event in events:
        try:
            data = json.loads(event.body or b"{}")
        except ValueError:
            results.append({"statusCode": 400, "body": {"error": "the body must be JSON"}})
            continue
        results.append({"statusCode": 200, "body": {"received": data, "batch_size": len(events)}})
    return results
