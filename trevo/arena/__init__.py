"""The arena: sweeps of components × tasks × seeds (× learning rates) under controlled variables,
an embedded SQLite results store, and a report."""
