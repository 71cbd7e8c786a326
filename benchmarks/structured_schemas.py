"""JSON Schemas of real-world shape for the structured-output benchmark and tests (benchmarks/structured_output.py):
nested objects, arrays, enums, anyOf, string formats, optional fields, patterns, bounds, recursion."""
from __future__ import annotations

from typing import Any

Schema = dict[str, Any]


def obj(required: dict[str, Any], optional: dict[str, Any] | None = None, **extra: Any) -> Schema:
    """An object with `required` properties and `optional` ones, no others."""
    return {"type": "object", "properties": {**required, **(optional or {})}, "required": list(required),
            "additionalProperties": False, **extra}


def arr(items: Any, low: int | None = None, high: int | None = None) -> Schema:
    out: Schema = {"type": "array", "items": items}
    if low is not None:
        out["minItems"] = low
    if high is not None:
        out["maxItems"] = high
    return out


S = {"type": "string"}
STR = {"type": "string", "maxLength": 40}
INT = {"type": "integer"}
NUM = {"type": "number"}
BOOL = {"type": "boolean"}
EMAIL = {"type": "string", "format": "email"}
DATE = {"type": "string", "format": "date"}
DATETIME = {"type": "string", "format": "date-time"}
URI = {"type": "string", "format": "uri"}
UUID = {"type": "string", "format": "uuid"}
ADDRESS = obj({"street": STR, "city": STR, "country": {"type": "string", "pattern": "^[A-Z]{2}$"}},
              {"postal_code": {"type": "string", "pattern": "^[0-9]{5}$"}})
MONEY = obj({"amount": {"type": "number", "minimum": 0}, "currency": {"enum": ["USD", "EUR", "GBP", "JPY"]}})
PERSON = obj({"name": STR, "age": {"type": "integer", "minimum": 0, "maximum": 130}}, {"email": EMAIL})

SCHEMAS: dict[str, Schema] = {
    "person": PERSON,
    "address": ADDRESS,
    "money": MONEY,
    "user_profile": obj({"id": UUID, "username": {"type": "string", "pattern": "^[a-z][a-z0-9_]{2,15}$"},
                         "email": EMAIL, "created_at": DATETIME},
                        {"bio": {"type": "string", "maxLength": 80}, "website": URI}),
    "contact_card": obj({"person": PERSON, "address": ADDRESS}, {"phones": arr(STR, 0, 3)}),
    "product": obj({"sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"}, "title": STR, "price": MONEY,
                    "in_stock": BOOL}, {"tags": arr(STR, 0, 5)}),
    "order_line": obj({"sku": STR, "quantity": {"type": "integer", "minimum": 1, "maximum": 99},
                       "unit_price": {"type": "number", "minimum": 0}}),
    "order": obj({"order_id": STR, "customer": PERSON,
                  "lines": arr(obj({"sku": STR, "quantity": {"type": "integer", "minimum": 1}}), 1, 4),
                  "status": {"enum": ["pending", "paid", "shipped", "cancelled"]}}, {"shipping": ADDRESS}),
    "invoice": obj({"number": {"type": "string", "pattern": "^INV-[0-9]{6}$"}, "issued": DATE, "due": DATE,
                    "total": MONEY}, {"notes": STR}),
    "calendar_event": obj({"title": STR, "start": DATETIME, "end": DATETIME},
                          {"location": STR, "attendees": arr(EMAIL, 0, 4), "all_day": BOOL}),
    "weather": obj({"city": STR, "temperature_c": {"type": "number", "minimum": -90, "maximum": 60},
                    "condition": {"enum": ["sunny", "cloudy", "rain", "snow", "storm", "fog"]}},
                   {"humidity": {"type": "integer", "minimum": 0, "maximum": 100}}),
    "sentiment": obj({"label": {"enum": ["positive", "negative", "neutral"]},
                      "score": {"type": "number", "minimum": 0, "maximum": 1}}),
    "classification": obj({"category": {"enum": ["billing", "technical", "account", "other"]},
                           "confidence": {"type": "number", "minimum": 0, "maximum": 1}},
                          {"reason": {"type": "string", "maxLength": 60}}),
    "named_entities": obj({"entities": arr(obj({"text": STR, "type": {"enum": ["PERSON", "ORG", "LOC", "DATE"]}}),
                                           0, 5)}),
    "keywords": obj({"keywords": arr({"type": "string", "maxLength": 20}, 1, 6)}),
    "yes_no": obj({"answer": {"enum": ["yes", "no"]}}),
    "rating": obj({"stars": {"type": "integer", "minimum": 1, "maximum": 5}}, {"comment": STR}),
    "book": obj({"title": STR, "authors": arr(STR, 1, 3), "year": {"type": "integer", "minimum": 1450,
                                                                    "maximum": 2030}},
                {"isbn": {"type": "string", "pattern": "^97[89][0-9]{10}$"}, "genres": arr(STR, 0, 3)}),
    "movie": obj({"title": STR, "director": STR, "rating": {"type": "number", "minimum": 0, "maximum": 10}},
                 {"cast": arr(PERSON, 0, 3)}),
    "recipe": obj({"name": STR, "servings": {"type": "integer", "minimum": 1, "maximum": 12},
                   "ingredients": arr(obj({"item": STR, "grams": {"type": "number", "minimum": 0}}), 1, 5),
                   "steps": arr({"type": "string", "maxLength": 60}, 1, 4)}),
    "geo_point": obj({"lat": {"type": "number", "minimum": -90, "maximum": 90},
                      "lon": {"type": "number", "minimum": -180, "maximum": 180}}),
    "bounding_box": obj({"south_west": {"$ref": "#/$defs/point"}, "north_east": {"$ref": "#/$defs/point"}},
                        **{"$defs": {"point": obj({"lat": NUM, "lon": NUM})}}),
    "http_request": obj({"method": {"enum": ["GET", "POST", "PUT", "DELETE", "PATCH"]}, "url": URI},
                        {"headers": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 30},
                                     "maxProperties": 3},
                         "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 60}}),
    "http_response": obj({"status": {"type": "integer", "minimum": 100, "maximum": 599}, "ok": BOOL},
                         {"body": {"anyOf": [STR, {"type": "null"}]}}),
    "server_config": obj({"host": {"type": "string", "format": "ipv4"}, "port": {"type": "integer", "minimum": 1,
                                                                                   "maximum": 65535},
                          "tls": BOOL}, {"workers": {"type": "integer", "minimum": 1, "maximum": 64}}),
    "log_entry": obj({"timestamp": DATETIME, "level": {"enum": ["DEBUG", "INFO", "WARN", "ERROR"]}, "message": STR},
                     {"context": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]},
                                  "maxProperties": 3}}),
    "feature_flag": obj({"key": {"type": "string", "pattern": "^[a-z][a-z0-9-]{1,30}$"}, "enabled": BOOL,
                         "rollout_percent": {"type": "integer", "minimum": 0, "maximum": 100}}),
    "ci_job": obj({"name": STR, "runs_on": {"enum": ["ubuntu-latest", "macos-latest", "windows-latest"]},
                   "steps": arr(obj({"name": STR}, {"run": STR}), 1, 3)}),
    "package_json": obj({"name": {"type": "string", "pattern": "^[a-z][a-z0-9-]{0,20}$"},
                         "version": {"type": "string", "pattern": "^[0-9]+\\.[0-9]+\\.[0-9]+$"}},
                        {"private": BOOL, "keywords": arr(STR, 0, 3)}),
    "sql_query": obj({"table": STR, "columns": arr(STR, 1, 4)},
                     {"where": obj({"column": STR, "op": {"enum": ["=", "<", ">", "!="]},
                                    "value": {"anyOf": [STR, NUM, BOOL]}}),
                      "limit": {"type": "integer", "minimum": 1, "maximum": 1000}}),
    "search_query": obj({"query": STR}, {"filters": obj({}, {"from": DATE, "to": DATE, "language": {
        "enum": ["en", "fr", "de", "es"]}}), "page": {"type": "integer", "minimum": 1}}),
    "tool_call_weather": obj({"location": STR, "unit": {"enum": ["celsius", "fahrenheit"]}}),
    "tool_call_email": obj({"to": arr(EMAIL, 1, 3), "subject": STR, "body": {"type": "string", "maxLength": 100}},
                           {"cc": arr(EMAIL, 0, 2)}),
    "flight_booking": obj({"from": {"type": "string", "pattern": "^[A-Z]{3}$"}, "to": {"type": "string",
                                                                                     "pattern": "^[A-Z]{3}$"},
                           "date": DATE, "passengers": {"type": "integer", "minimum": 1, "maximum": 9},
                           "cabin": {"enum": ["economy", "premium", "business", "first"]}}),
    "hotel_booking": obj({"hotel": STR, "check_in": DATE, "nights": {"type": "integer", "minimum": 1, "maximum": 30},
                          "guests": arr(PERSON, 1, 3)}),
    "bank_transfer": obj({"from_iban": {"type": "string", "pattern": "^[A-Z]{2}[0-9]{2}[A-Z0-9]{10,20}$"},
                          "to_iban": {"type": "string", "pattern": "^[A-Z]{2}[0-9]{2}[A-Z0-9]{10,20}$"},
                          "amount": MONEY}, {"reference": STR}),
    "medical_observation": obj({"patient_id": UUID, "code": {"enum": ["heart_rate", "blood_pressure", "temperature"]},
                                "value": NUM, "observed_at": DATETIME}, {"unit": STR}),
    "sensor_reading": obj({"sensor": STR, "values": arr(NUM, 1, 5), "ok": BOOL}),
    "matrix_2x2": obj({"rows": arr(arr(NUM, 2, 2), 2, 2)}),
    "color": obj({"hex": {"type": "string", "pattern": "^#[0-9a-f]{6}$"}},
                 {"name": STR, "rgb": arr({"type": "integer", "minimum": 0, "maximum": 255}, 3, 3)}),
    "shape": {"anyOf": [obj({"kind": {"const": "circle"}, "radius": {"type": "number", "minimum": 0}}),
                        obj({"kind": {"const": "rect"}, "width": {"type": "number", "minimum": 0},
                             "height": {"type": "number", "minimum": 0}})]},
    "payment_method": {"anyOf": [obj({"type": {"const": "card"}, "last4": {"type": "string", "pattern": "^[0-9]{4}$"}}),
                                 obj({"type": {"const": "paypal"}, "email": EMAIL}),
                                 obj({"type": {"const": "bank"}, "iban": STR})]},
    "nullable_fields": obj({"name": STR, "nickname": {"type": ["string", "null"], "maxLength": 20},
                            "score": {"anyOf": [NUM, {"type": "null"}]}}),
    "survey_answer": obj({"question_id": INT, "answer": {"anyOf": [BOOL, {"type": "integer", "minimum": 0,
                                                                          "maximum": 10}, STR]}}),
    "todo_list": obj({"title": STR, "items": arr(obj({"text": STR, "done": BOOL}, {"due": DATE}), 0, 5)}),
    "org_chart": obj({"root": {"$ref": "#/$defs/employee"}}, **{"$defs": {"employee": obj(
        {"name": STR, "title": STR}, {"reports": arr({"$ref": "#/$defs/employee"}, 0, 2)})}}),
    "file_tree": {"$ref": "#/$defs/node", "$defs": {"node": obj(
        {"name": {"type": "string", "maxLength": 20}, "kind": {"enum": ["file", "dir"]}},
        {"children": arr({"$ref": "#/$defs/node"}, 0, 3)})}},
    "linked_list": {"$ref": "#/$defs/cell", "$defs": {"cell": obj(
        {"value": INT}, {"next": {"anyOf": [{"$ref": "#/$defs/cell"}, {"type": "null"}]}})}},
    "math_answer": obj({"reasoning": {"type": "string", "maxLength": 120}, "answer": NUM}),
    "translation": obj({"source_lang": {"enum": ["en", "fr", "de", "es", "it"]},
                        "target_lang": {"enum": ["en", "fr", "de", "es", "it"]}, "text": STR}),
    "summary": obj({"title": STR, "bullets": arr({"type": "string", "maxLength": 60}, 1, 3)},
                   {"word_count": {"type": "integer", "minimum": 0}}),
    "qa_pair": obj({"question": STR, "answer": STR}, {"sources": arr(URI, 0, 2)}),
    "chess_move": obj({"from": {"type": "string", "pattern": "^[a-h][1-8]$"},
                       "to": {"type": "string", "pattern": "^[a-h][1-8]$"}},
                      {"promotion": {"enum": ["q", "r", "b", "n"]}}),
    "version_info": obj({"major": {"type": "integer", "minimum": 0}, "minor": {"type": "integer", "minimum": 0},
                         "patch": {"type": "integer", "minimum": 0}}, {"prerelease": {"type": "string",
                                                                                    "pattern": "^[a-z]+[0-9]*$"}}),
    "key_value_map": {"type": "object", "additionalProperties": {"type": "integer"}, "maxProperties": 4},
    "string_list": arr({"type": "string", "maxLength": 20}, 1, 5),
    "number_tuple": {"type": "array", "prefixItems": [NUM, NUM, {"enum": ["m", "km"]}], "items": False},
    "open_object": {"type": "object", "properties": {"id": INT, "name": STR}, "required": ["id"]},
}

PROMPT = "Answer with one JSON object that matches this JSON Schema.\nSchema: {schema}\nJSON:"
