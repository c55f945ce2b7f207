#!/usr/bin/env python3
"""A second publisher, in another language, written from docs/protocol.md only.

Publishes one v1 copy request to icc.<cell>.requests with publisher confirms and `mandatory`, waits on an
exclusive, server-named reply queue for the final result (a failed result with "retryable": true is not
final), and prints that result as one JSON line on stdout. Retried attempts are reported on stderr.

Exit codes: 0 a final result was printed (whatever its status); 1 no final result within --timeout;
2 the request was unroutable (no request queue) or refused by the broker.

After --resend-after seconds without any result it sends the request again, same requestId (what a
deleted queue held is gone: docs/protocol.md, "Deleted queues and exchanges").

Usage: pika_publish.py --cell CELL --image IMAGE --destination NODE [--source NODE] [--sha256 HEX]
                       [--size BYTES] [--request-id ID] [--amqp-url URL] [--timeout SECONDS]
                       [--resend-after SECONDS]
"""
import argparse
import json
import os
import sys
import time
import uuid

import pika


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--amqp-url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"))
    parser.add_argument("--cell", required=True)
    parser.add_argument("--image", required=True)
    parser.add_argument("--destination", required=True)
    parser.add_argument("--source")
    parser.add_argument("--sha256")
    parser.add_argument("--size", type=int)
    parser.add_argument("--request-id", default=f"py-{uuid.uuid4()}")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--resend-after", type=float, default=300.0)
    args = parser.parse_args()

    connection = pika.BlockingConnection(pika.URLParameters(args.amqp_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()

        # Server-named and exclusive: deleted with this connection. Declared before publishing.
        reply_queue = channel.queue_declare(queue="", exclusive=True).method.queue

        request = {"v": 1, "requestId": args.request_id, "imageId": args.image, "destination": args.destination}
        for field, value in (("source", args.source), ("sha256", args.sha256), ("size", args.size)):
            if value is not None:
                request[field] = value

        def publish():
            channel.basic_publish(
                exchange="",
                routing_key=f"icc.{args.cell}.requests",
                body=json.dumps(request).encode("utf-8"),
                properties=pika.BasicProperties(
                    content_type="application/json",
                    delivery_mode=2,
                    message_id=args.request_id,
                    reply_to=reply_queue,
                    correlation_id=args.request_id,
                ),
                mandatory=True,
            )

        try:
            publish()
        except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as error:
            print(f"request not accepted by the broker: {error!r}", file=sys.stderr)
            return 2

        give_up_at = time.monotonic() + args.timeout
        last_heard = time.monotonic()
        for method, properties, body in channel.consume(reply_queue, auto_ack=True, inactivity_timeout=0.5):
            now = time.monotonic()
            if method is None:
                if now > give_up_at:
                    print(f"no final result for {args.request_id} within {args.timeout} s", file=sys.stderr)
                    return 1
                if now - last_heard > args.resend_after:
                    print(f"nothing heard for {args.resend_after} s: sending {args.request_id} again", file=sys.stderr)
                    publish()
                    last_heard = now
                continue
            if properties.correlation_id != args.request_id:
                continue
            last_heard = now
            result = json.loads(body)
            if result.get("type") != "result":
                continue
            if result.get("status") == "failed" and result.get("retryable"):
                print(f"attempt {result.get('attempt')} failed ({result.get('reason')}); retrying", file=sys.stderr)
                continue
            print(json.dumps(result), flush=True)
            break
        channel.cancel()
        return 0
    finally:
        connection.close()


if __name__ == "__main__":
    sys.exit(main())
