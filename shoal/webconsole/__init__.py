"""The web console served by `shoal server` at /console: endpoints and components, where each copy runs
(instances drawn as their accelerators and cores), live load per component and per copy, autoscaling and
its activities beside the load, actions (scale, deploy, delete, autoscaling policy) through the control
API, and `shoal bench` results. Everything it loads ships in this package (static/, uPlot vendored); the
server side is a few read-only JSON routes over state the server already holds (routes.py, summary.py) and
a bounded load history sampled every 2 s (history.py). See docs/console.md.

(`shoal.console` is another thing: rich consoles for the CLI's tables.)"""
from __future__ import annotations

from shoal.webconsole.routes import WebConsole

__all__ = ["WebConsole"]
