# Shortcuts for developers; the README's two commands need nothing but pip.
.PHONY: run test check bench worker beat migrate scenarios

run:
	pip install -e . && gridcase serve

test:
	pip install -e ".[test]" && python -m pytest

check:
	ruff check engine api tests bench && mypy

bench:
	python bench/engine_step.py && python bench/timers.py --quick

worker:
	celery -A engine.worker worker --loglevel=info

beat:
	celery -A engine.worker beat --loglevel=info

migrate:
	python -c "from engine.store.db import Database, resolve_url; Database(resolve_url()).migrate()"

scenarios:
	gridcase scenarios
