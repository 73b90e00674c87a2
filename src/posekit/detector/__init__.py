"""The person detector family (DETR-style): box operations and matching so far."""
