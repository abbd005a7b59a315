"""The store: one SQLite file per repository with every conversation, feedback event and
training example (continualcode.store.db.Store), its schema migrations, and secret redaction."""
