"""The Celery adapter (ARCHITECTURE §1, §3): the only package that imports celery.

``celery -A engine.worker worker`` and ``celery -A engine.worker beat`` find ``celery_app`` here. The
app and its beat schedule are in ``app``, the thin tasks in ``tasks``, the ``JobPublisher`` adapter in
``publisher``.
"""

from engine.worker.app import celery_app

celery = celery_app  # the name ``celery -A engine.worker`` looks for first

__all__ = ["celery", "celery_app"]
