"""One router per feature; each module's `create_router()` builds a fresh one per dispatcher."""
