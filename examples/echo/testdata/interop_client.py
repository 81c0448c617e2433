"""Interop client for examples/echo: python-websockets (Debian's python3-websockets).

Echo of a text, a binary and a 64 KiB and a 200 KB message, then a close handshake the
client starts (1000): the server must answer with 1000. Prints OK and exits 0, or says what
went wrong and exits 1. Usage: interop_client.py ws://host:port/ws [deflate]
With deflate, the connection must have negotiated permessage-deflate (RFC 7692).
"""
import asyncio
import sys

import websockets


async def check(url, deflate):
    async with websockets.connect(url, max_size=1 << 20) as ws:
        names = [e.name for e in ws.extensions]
        if deflate != ("permessage-deflate" in names):
            raise AssertionError(f"extensions negotiated: {names}, deflate wanted: {deflate}")
        for msg in ["hello", bytes(range(256)), "x" * (64 << 10), bytes(200_000)]:
            await ws.send(msg)
            got = await asyncio.wait_for(ws.recv(), 10)
            if got != msg:
                raise AssertionError(f"echo of a {type(msg).__name__} of {len(msg)}: got {type(got).__name__} of {len(got)}")
        pong = await ws.ping()
        await asyncio.wait_for(pong, 10)
        await asyncio.wait_for(ws.close(1000, "bye"), 10)
        if ws.close_code != 1000:
            raise AssertionError(f"the server closed with {ws.close_code} {ws.close_reason!r}, want 1000")


def main():
    try:
        asyncio.run(check(sys.argv[1], sys.argv[2:] == ["deflate"]))
    except Exception as e:  # report anything as a failure with its text
        print(f"FAIL: {type(e).__name__}: {e}")
        sys.exit(1)
    print("OK")


main()
