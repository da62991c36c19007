"""Opening a database with libonboarding.so loaded, for the scripts beside it."""

import sqlite3


def connect(extension, db_path):
    """An autocommit connection to `db_path` with `extension` loaded and
    foreign keys enforced."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.enable_load_extension(True)
    conn.load_extension(extension)
    conn.enable_load_extension(False)
    conn.execute("PRAGMA foreign_keys = ON")
    return conn
