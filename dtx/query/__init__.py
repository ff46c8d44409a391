"""Query time over a store: BM25 retrieval, cached-representation fetch, the two components."""

from dtx.query.pipeline import Candidate, QueryPipeline, QueryResult

__all__ = ["Candidate", "QueryPipeline", "QueryResult"]
