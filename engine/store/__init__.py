"""Persistence for the engine: SQLAlchemy 2.0 Core tables, the database handle and Alembic migrations.

Nothing here knows about SpiffWorkflow, Flask or HTTP; the engine modules above talk to it.
"""
