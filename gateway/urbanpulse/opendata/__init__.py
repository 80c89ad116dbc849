"""Open data that anyone can verify (CONTRACT.md v2): the export of readings with their
source payloads, inclusion proofs and receipts (export.py), and its verification from the
files alone (verify.py); layout.py is the one place for the files' names and columns."""
