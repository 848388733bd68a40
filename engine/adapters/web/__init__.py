"""The on-call page: a small server-rendered UI over the same store, desk and executor as the API."""
