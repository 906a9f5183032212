"""The offline HTML report of a run (curation, tokenizers, measurement) and its run-to-run diff."""
