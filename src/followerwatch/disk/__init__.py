"""Local files that must survive: SQLite files, grouped commits, a full disk."""
