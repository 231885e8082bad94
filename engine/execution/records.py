"""Kinds of the execution log's records in the audit store."""

#: Every step of an order (approved, submitting, filled, denied, pending_approval, rejected,
#: expired, cancelled, failed), keyed by its client id.
ORDER = "order"
