"""CloudWatch's query operations over the samples shoal keeps: GetMetricStatistics, GetMetricData, ListMetrics.

Each takes the request as botocore's service model names it (timestamps as datetimes or epoch seconds) and
returns the answer the same way (timestamps as UTC datetimes); the wire (CBOR, JSON 1.0 or the query
protocol) is shoal.observability.cloudwatch.wire's. Refusals are CloudWatch's error codes (`InvalidParameterValue`,
`MissingParameter`, `InvalidParameterCombination`, `InvalidNextToken`).

Resolution is one minute: a Period below 60 s (CloudWatch's high-resolution periods 1, 5, 10, 30) is answered
with one datapoint per minute. Statistics: SampleCount, Sum, Average, Minimum, Maximum, and percentiles
`pNN` / `pNN.N` (within 1 % of a sample's value). GetMetricData's expressions are arithmetic (+ - * /,
parentheses, numbers) over other queries' ids.
"""
from __future__ import annotations

import ast
import datetime as dt
import math
import operator
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from shoal.observability.service import Observability
from shoal.observability.sketch import Dist
from shoal.observability.store import MINUTE, SeriesKey, dims_of

Body = dict[str, Any]
STATISTICS = ("SampleCount", "Average", "Sum", "Minimum", "Maximum")
_PERCENTILE = re.compile(r"^p(\d{1,2}(\.\d{1,10})?|100(\.0{1,10})?)$")
_QUERY_ID = re.compile(r"^[a-z][a-zA-Z0-9_]*$")
MAX_STATISTICS_DATAPOINTS = 1440
MAX_DATA_DATAPOINTS = 100_800
MAX_QUERIES = 500
LIST_PAGE = 500
LISTED_FOR_S = 14 * 86400  # ListMetrics: metrics with data in the last two weeks, as CloudWatch
RECENT_S = 3 * 3600  # RecentlyActive PT3H


class CloudWatchError(Exception):
    """A refusal: CloudWatch's error code, the shape botocore models it with, the HTTP status."""

    SHAPES: ClassVar[dict[str, str]] = {"InvalidParameterValue": "InvalidParameterValueException",
              "MissingParameter": "MissingRequiredParameterException",
              "InvalidParameterCombination": "InvalidParameterCombinationException",
              "InvalidNextToken": "InvalidNextToken", "InternalServiceError": "InternalServiceFault"}

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status

    @property
    def shape(self) -> str:
        return self.SHAPES.get(self.code, self.code)

    @property
    def sender(self) -> bool:
        return self.status < 500


def _invalid(message: str) -> CloudWatchError:
    return CloudWatchError("InvalidParameterValue", message)


def _required(body: Body, *names: str, where: str = "") -> None:
    for name in names:
        if body.get(name) is None:
            raise CloudWatchError("MissingParameter", f"The parameter {where}{name} is required.")


def _epoch(value: Any, name: str) -> float:
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):  # the query protocol's ISO 8601 (UTC unless it says otherwise)
        try:
            return _epoch(dt.datetime.fromisoformat(value), name)
        except ValueError:
            pass
    raise _invalid(f"The parameter {name} must be a timestamp.")


def _when(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


def _range(body: Body) -> tuple[int, int]:
    """[start, end) in epoch seconds, start rounded down to the minute (as CloudWatch does)."""
    start, end = _epoch(body["StartTime"], "StartTime"), _epoch(body["EndTime"], "EndTime")
    if end <= start:
        raise _invalid("The parameter StartTime must be less than the parameter EndTime.")
    return int(start // MINUTE) * MINUTE, math.ceil(end)


def _period(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _invalid(f"The parameter {name} must be a positive integer.")
    if value not in (1, 5, 10, 30) and value % 60:
        raise _invalid(f"The parameter {name} must be 1, 5, 10, 30 or a multiple of 60.")
    return max(value, MINUTE)


def _dims(value: Any, name: str, values_required: bool = True) -> list[tuple[str, str | None]]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > 30:
        raise _invalid(f"The parameter {name} must be a list of at most 30 dimensions.")
    out = []
    for i, d in enumerate(value, 1):
        if not isinstance(d, dict) or not isinstance(d.get("Name"), str) or not d["Name"]:
            raise CloudWatchError("MissingParameter", f"The parameter {name}.member.{i}.Name is required.")
        v = d.get("Value")
        if v is None and values_required:
            raise CloudWatchError("MissingParameter", f"The parameter {name}.member.{i}.Value is required.")
        if v is not None and not isinstance(v, str):
            raise _invalid(f"The parameter {name}.member.{i}.Value must be a string.")
        out.append((d["Name"], v))
    return out


@dataclass(frozen=True)
class Statistic:
    name: str  # as asked: Sum, p99, ...
    quantile: float | None = None

    @classmethod
    def parse(cls, name: Any, where: str) -> Statistic:
        if name in STATISTICS:
            return cls(name)
        if isinstance(name, str) and _PERCENTILE.match(name):
            return cls(name, float(name[1:]) / 100)
        raise _invalid(f"The value {name!r} for parameter {where} is not valid: shoal computes SampleCount, Average, "
                       f"Sum, Minimum, Maximum and percentiles pNN.NN.")

    def of(self, d: Dist) -> float | None:
        if self.quantile is not None:
            return d.quantile(self.quantile)
        return {"SampleCount": float(d.count), "Sum": d.total, "Minimum": d.minimum, "Maximum": d.maximum,
                "Average": d.total / d.count if d.count else None}[self.name]


def _buckets(minutes: dict[int, Dist], start: int, period: int) -> list[tuple[int, Dist]]:
    """Minutes merged into periods from `start`; (period start, its samples), oldest first."""
    out: dict[int, Dist] = {}
    for minute in sorted(minutes):
        at = start + (minute - start) // period * period
        if at not in out:
            out[at] = Dist()
        out[at].merge(minutes[minute])
    return sorted(out.items())


class CloudWatch:
    def __init__(self, obs: Observability, clock: Callable[[], float] = time.time) -> None:
        self.obs = obs
        self.clock = clock
        self.operations = {"GetMetricStatistics": self.get_metric_statistics, "GetMetricData": self.get_metric_data,
                           "ListMetrics": self.list_metrics}

    async def __call__(self, operation: str, body: Body) -> Body:
        handler = self.operations.get(operation)
        if handler is None:
            raise CloudWatchError("UnknownOperationException",
                                  f"shoal's CloudWatch serves {', '.join(self.operations)}; not {operation}")
        return await handler(body)

    async def _series(self, namespace: Any, metric: Any, dimensions: list[tuple[str, str | None]], start: int,
                      end: int, unit: Any) -> tuple[dict[int, Dist], str | None]:
        key = SeriesKey(namespace, metric, dims_of((n, v or "") for n, v in dimensions))
        stored_unit = self.obs.unit(key)
        if stored_unit is None or (unit is not None and unit != stored_unit):
            return {}, stored_unit
        return await self.obs.minutes(key, start, end), stored_unit

    # -- GetMetricStatistics -------------------------------------------------------------------------------
    async def get_metric_statistics(self, body: Body) -> Body:
        _required(body, "Namespace", "MetricName", "StartTime", "EndTime", "Period")
        statistics = body.get("Statistics") or []
        extended = body.get("ExtendedStatistics") or []
        if not statistics and not extended:
            raise CloudWatchError("InvalidParameterCombination",
                                  "At least one of the parameters Statistics and ExtendedStatistics must be specified.")
        if len(statistics) > 5 or len(extended) > 10:
            raise _invalid("At most 5 Statistics and 10 ExtendedStatistics may be asked for.")
        for i, name in enumerate(statistics, 1):
            if name not in STATISTICS:
                raise _invalid(f"The parameter Statistics.member.{i} must be a value in the set {list(STATISTICS)}.")
        stats = [Statistic.parse(name, f"ExtendedStatistics.member.{i}") for i, name in enumerate(extended, 1)]
        start, end = _range(body)
        period = _period(body["Period"], "Period")
        if (n := math.ceil((end - start) / period)) > MAX_STATISTICS_DATAPOINTS:
            raise CloudWatchError("InvalidParameterCombination",
                                  f"You have requested up to {n:,} datapoints, which exceeds the limit of 1,440. You "
                                  f"may reduce the datapoints requested by increasing Period, or decreasing the time "
                                  f"range.")
        minutes, unit = await self._series(body["Namespace"], body["MetricName"],
                                           _dims(body.get("Dimensions"), "Dimensions"), start, end, body.get("Unit"))
        points = []
        for at, dist in _buckets(minutes, start, period):
            point: Body = {"Timestamp": _when(at), "Unit": unit or "None"}
            for name in statistics:
                point[name] = Statistic(name).of(dist)
            if stats:
                point["ExtendedStatistics"] = {s.name: s.of(dist) for s in stats}
            points.append(point)
        return {"Label": body["MetricName"], "Datapoints": points}

    # -- GetMetricData -----------------------------------------------------------------------------------------
    async def get_metric_data(self, body: Body) -> Body:
        _required(body, "MetricDataQueries", "StartTime", "EndTime")
        queries = body["MetricDataQueries"]
        if not isinstance(queries, list) or not queries or len(queries) > MAX_QUERIES:
            raise _invalid(f"The parameter MetricDataQueries must hold 1 to {MAX_QUERIES} queries.")
        start, end = _range(body)
        limit = body.get("MaxDatapoints") or MAX_DATA_DATAPOINTS
        offset = _token(body.get("NextToken"))
        ids: dict[str, list[tuple[int, float]]] = {}
        results = []
        for i, q in enumerate(queries, 1):
            where = f"MetricDataQueries.member.{i}"
            if not isinstance(q, dict):
                raise _invalid(f"The parameter {where} must be a structure.")
            _required(q, "Id", where=where + ".")
            if not _QUERY_ID.match(q["Id"]) or q["Id"] in ids:
                raise _invalid(f"The value {q['Id']!r} for parameter {where}.Id is not valid: an id starts with a "
                               f"lower-case letter, holds letters, digits and _, and is unique.")
            if (q.get("MetricStat") is None) == (q.get("Expression") is None):
                raise CloudWatchError("InvalidParameterCombination",
                                      f"Exactly one of {where}.MetricStat and {where}.Expression must be specified.")
            if q.get("MetricStat") is not None:
                points, label = await self._metric_stat(q["MetricStat"], where + ".MetricStat", start, end)
            else:
                points, label = _evaluate(q["Expression"], ids, where + ".Expression"), q["Expression"]
            ids[q["Id"]] = points
            if q.get("ReturnData", True):
                results.append((q["Id"], q.get("Label") or label, points))
        descending = body.get("ScanBy", "TimestampDescending") != "TimestampAscending"
        answer: Body = {"MetricDataResults": [], "Messages": []}
        position, stop = 0, offset + limit  # pages run across the results, in their order
        for qid, label, points in results:
            ordered = sorted(points, reverse=descending)
            low = min(max(offset - position, 0), len(ordered))
            high = min(max(stop - position, 0), len(ordered))
            position += len(ordered)
            answer["MetricDataResults"].append({
                "Id": qid, "Label": label, "Timestamps": [_when(at) for at, _ in ordered[low:high]],
                "Values": [v for _, v in ordered[low:high]],
                "StatusCode": "PartialData" if high < len(ordered) else "Complete", "Messages": []})
        if position > stop:
            answer["NextToken"] = str(stop)
        return answer

    async def _metric_stat(self, stat: Any, where: str, start: int, end: int) -> tuple[list[tuple[int, float]], str]:
        if not isinstance(stat, dict):
            raise _invalid(f"The parameter {where} must be a structure.")
        _required(stat, "Metric", "Period", "Stat", where=where + ".")
        metric = stat["Metric"]
        if not isinstance(metric, dict):
            raise _invalid(f"The parameter {where}.Metric must be a structure.")
        _required(metric, "Namespace", "MetricName", where=where + ".Metric.")
        statistic = Statistic.parse(stat["Stat"], where + ".Stat")
        period = _period(stat["Period"], where + ".Period")
        minutes, _unit = await self._series(metric["Namespace"], metric["MetricName"],
                                            _dims(metric.get("Dimensions"), where + ".Metric.Dimensions"), start, end,
                                            stat.get("Unit"))
        points = [(at, v) for at, dist in _buckets(minutes, start, period) if (v := statistic.of(dist)) is not None]
        return points, metric["MetricName"]

    # -- ListMetrics ---------------------------------------------------------------------------------------------
    async def list_metrics(self, body: Body) -> Body:
        filters = _dims(body.get("Dimensions"), "Dimensions", values_required=False)
        since = self.clock() - (RECENT_S if body.get("RecentlyActive") == "PT3H" else LISTED_FOR_S)
        found = []
        for key, _unit, last in self.obs.series():
            if last + MINUTE < since or (body.get("Namespace") and key.namespace != body["Namespace"]) or \
                    (body.get("MetricName") and key.metric != body["MetricName"]):
                continue
            held = dict(key.dims)
            if all(name in held and (value is None or held[name] == value) for name, value in filters):
                found.append(key)
        found.sort(key=lambda k: (k.namespace, k.metric, k.dims))
        offset = _token(body.get("NextToken"))
        page = found[offset:offset + LIST_PAGE]
        answer: Body = {"Metrics": [{"Namespace": k.namespace, "MetricName": k.metric,
                                     "Dimensions": [{"Name": n, "Value": v} for n, v in k.dims]} for k in page]}
        if offset + LIST_PAGE < len(found):
            answer["NextToken"] = str(offset + LIST_PAGE)
        return answer


def _token(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise CloudWatchError("InvalidNextToken", "The service cannot process the NextToken value.")


# -- metric math: arithmetic over other queries' ids ----------------------------------------------------------
_OPERATORS: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
Series = list[tuple[int, float]]


def _evaluate(expression: Any, ids: dict[str, Series], where: str) -> Series:
    if not isinstance(expression, str) or not expression.strip():
        raise _invalid(f"The parameter {where} must be a non-empty string.")
    try:
        tree = ast.parse(expression, mode="eval").body
    except SyntaxError:
        raise _invalid(f"The expression {expression!r} in {where} is not valid.") from None
    value = _node(tree, ids, expression, where)
    if isinstance(value, float):
        raise _invalid(f"The expression {expression!r} in {where} names no time series.")
    return value


def _node(node: ast.AST, ids: dict[str, Series], expression: str, where: str) -> Series | float:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.Name):
        if node.id not in ids:
            raise _invalid(f"The expression {expression!r} in {where} names {node.id!r}, which no earlier query "
                           f"defines.")
        return ids[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _node(node.operand, ids, expression, where)
        sign = -1.0 if isinstance(node.op, ast.USub) else 1.0
        return sign * inner if isinstance(inner, float) else [(t, sign * v) for t, v in inner]
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        return _combine(_OPERATORS[type(node.op)], _node(node.left, ids, expression, where),
                        _node(node.right, ids, expression, where))
    raise _invalid(f"The expression {expression!r} in {where} is not supported: shoal evaluates + - * / and "
                   f"parentheses over query ids and numbers.")


def _combine(op: Callable[[float, float], float], left: Series | float, right: Series | float) -> Series | float:
    def safe(a: float, b: float) -> float | None:
        try:
            return op(a, b)
        except ZeroDivisionError:
            return None  # CloudWatch leaves such a point out
    if isinstance(left, float) and isinstance(right, float):
        return op(left, right)
    if isinstance(left, float):
        return [(t, v) for t, r in right if (v := safe(left, r)) is not None]  # type: ignore[union-attr]
    if isinstance(right, float):
        return [(t, v) for t, lv in left if (v := safe(lv, right)) is not None]
    other = dict(right)
    return [(t, v) for t, lv in left if t in other and (v := safe(lv, other[t])) is not None]
