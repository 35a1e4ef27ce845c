"""Feast feature repository (run `feast -c feature_repo apply`)."""
