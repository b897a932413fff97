"""The PostgreSQL state backend: what replicas share (leases, state, outbox, spool)."""
