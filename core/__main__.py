"""Headless CLI: ``python -m core {scan,train,evaluate,predict} ...``."""

from core.cli import main

raise SystemExit(main())
