"""What the gateway does, independent of HTTP; the API and the CLI call these services,
which call the named SQL (gethookd/sql) and crypto."""
