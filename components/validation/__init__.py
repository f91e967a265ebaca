"""Data validation beyond the schema: per-source anomalies, split skew, drift, and the gate before Transform."""
