"""asyncio helpers shared by the feed server and client threads."""

from __future__ import annotations

import asyncio

__all__ = ["close_loop"]


def close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel the tasks left on ``loop``, let them finish, shut down async generators, close."""
    try:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()
