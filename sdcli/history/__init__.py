"""The local history: every generation request and saved image, in one SQLite file.

`store` opens the database and reads it, `migrations` builds and upgrades its schema, `recorder`
is the sink that writes a run's events into it. Nothing here is imported at start-up: only the
commands that record or read history load sqlite3.
"""
