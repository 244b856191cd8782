"""Training scripts for m2i's genre and emotion models (``python -m training.<script>``; see README)."""
