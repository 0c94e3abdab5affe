"""Evaluation: the dev protocol split, retrieval and recognition metrics, the metrics table."""
