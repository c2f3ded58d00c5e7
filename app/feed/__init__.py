"""Live market data: the websocket price protocol, the feed server (simulator and historical
replay), the resilient client and the market state the panels read.

No Qt here (checked by the import-linter contracts). See docs/feed-protocol.md and docs/feed.md.
"""
