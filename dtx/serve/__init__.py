"""`dtx serve`: re-rank and answer over HTTP, concurrent requests merged into one cross-component call.

app.py holds the HTTP API (FastAPI), batcher.py the micro-batcher, metrics.py the Prometheus text.
"""
