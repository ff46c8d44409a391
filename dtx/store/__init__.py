"""Cached passage representations: the store, the corpus reader and `dtx index`."""

from dtx.store.passage_store import CachedWindows, PassageStore, StoreError, StoreInfo

__all__ = ["CachedWindows", "PassageStore", "StoreError", "StoreInfo"]
