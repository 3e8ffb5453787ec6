#!/usr/bin/env python3
"""Put and get keys in a wimpy cluster from Python, over mTLS.

A plain Cap'n Proto client (pycapnp) of wimpy's schema: it reads
schema/wimpy.capnp, opens a TLS connection to the master with a client
certificate from the cluster's CA, and calls the master's proxy
(Master.put, Master.get, Master.delete), which routes each key to its owner.

    pip install pycapnp
    python3 clients/python/kv.py put greeting hello
    python3 clients/python/kv.py get greeting

By default it finds what `wimpy local` made in this directory
(wimpy-data/tls: ca.pem, operator.pem, operator.key). Elsewhere, give
--credentials DIR and --as NAME (a certificate from `wimpy cert issue
--role client NAME`), and --server-name when the master is reached by an
address its certificate does not name.
"""

import argparse
import asyncio
import os
import ssl
import sys

import capnp

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA = os.path.join(HERE, "..", "..", "schema", "wimpy.capnp")


def tls_context(credentials, name):
    """Trusts the cluster's CA only, and presents NAME's certificate."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=os.path.join(credentials, "ca.pem"))
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(os.path.join(credentials, name + ".pem"), os.path.join(credentials, name + ".key"))
    return context


def failure_text(failure):
    """A wimpy Failure union, in words."""
    which = failure.which()
    value = getattr(failure, which)
    return f"{which}: {value}"


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--master", default="127.0.0.1:7070")
    parser.add_argument("--credentials", default="wimpy-data/tls")
    parser.add_argument("--as", dest="name", default="operator")
    parser.add_argument("--server-name", help="the name to check the master's certificate for")
    parser.add_argument("command", choices=["put", "get", "del"])
    parser.add_argument("key")
    parser.add_argument("value", nargs="?")
    args = parser.parse_args()

    # The schema imports /capnp/stream.capnp, which pycapnp ships inside
    # its package (and the Cap'n Proto tools under /usr/include).
    bundled = os.path.dirname(os.path.dirname(capnp.__file__))
    wimpy = capnp.load(SCHEMA, imports=[bundled, "/usr/include"])
    host, port = args.master.rsplit(":", 1)
    stream = await capnp.AsyncIoStream.create_connection(
        host, int(port), ssl=tls_context(args.credentials, args.name), server_hostname=args.server_name or host
    )
    master = capnp.TwoPartyClient(stream).bootstrap().cast_as(wimpy.Master)
    key = args.key.encode()

    if args.command == "put":
        if args.value is None:
            parser.error("put needs a value")
        result = (await master.put(key, args.value.encode())).result
        if result.which() != "ok":
            sys.exit(f"put {args.key}: {failure_text(result.failure)}")
        print(f"stored {args.key}")
    elif args.command == "get":
        result = (await master.get(key)).result
        if result.which() == "notFound":
            sys.exit(f"{args.key}: not found")
        if result.which() != "value":
            sys.exit(f"get {args.key}: {failure_text(result.failure)}")
        sys.stdout.buffer.write(result.value)
    else:
        result = (await master.delete(key)).result
        if result.which() != "deleted":
            sys.exit(f"del {args.key}: {failure_text(result.failure)}")
        print("deleted" if result.deleted else "was not there")


if __name__ == "__main__":
    asyncio.run(capnp.run(main()))
