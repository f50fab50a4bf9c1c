"""Random (reader, writer) JSON Schema pairs for the soundness probe, from a seed.

A writer is drawn from a small grammar (objects with properties, patterns, closed and
unevaluated models, dependencies; arrays with tuples, contains, unevaluated items; bounds, enums,
``not``, combinators, ``$ref`` with and without siblings) under a random draft; the reader is the
writer with one part removed, added or replaced, sometimes under another draft. Running many
seeds of this against the probe found the two unsound verdicts named in test_json_schema.py
(draft-04 integers, a keyword lost when merging).
"""

from __future__ import annotations

import copy
import random
from typing import Any

DRAFTS = [None, "http://json-schema.org/draft-04/schema#", "http://json-schema.org/draft-06/schema#",
          "https://json-schema.org/draft/2019-09/schema", "https://json-schema.org/draft/2020-12/schema"]
NAMES = ["a", "b", "x_1", "y"]
_CONTAINERS = ("properties", "patternProperties", "definitions", "$defs", "dependentRequired", "dependencies")


class Pairs:
    """``Pairs(seed).pair()`` -> (reader, writer)."""

    def __init__(self, seed: int) -> None:
        self.rnd = random.Random(seed)

    def leaf(self, depth: int) -> dict[str, Any]:
        rnd = self.rnd
        choice = rnd.randrange(14)
        simple = [
            lambda: {"type": rnd.choice(["string", "integer", "number", "null", "boolean"])},
            lambda: {"type": ["string", "null"]},
            lambda: {"enum": rnd.sample([1, 2, "a", None, 2.5], 2)},
            lambda: {"const": rnd.choice([1, "a", None])},
            lambda: {"type": "integer",
                     rnd.choice(["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"]): rnd.randrange(-2, 3)},
            lambda: {"type": "string", rnd.choice(["minLength", "maxLength"]): rnd.randrange(0, 3)},
            lambda: {"not": self.leaf(depth + 1)},
            lambda: {"type": "number", "multipleOf": rnd.choice([1, 2, 0.5])},
            lambda: {rnd.choice(["anyOf", "oneOf", "allOf"]): [self.schema(depth + 1)
                                                              for _ in range(rnd.randrange(1, 3))]},
            lambda: {},
            lambda: {"$ref": "#/definitions/D"},
            lambda: {"$ref": "#/definitions/D", "type": rnd.choice(["object", "array", "string"])},
            lambda: {"allOf": [self.leaf(depth + 1), self.leaf(depth + 1)]},
        ]
        if choice < len(simple) and (depth < 3 or choice not in (6, 8, 12)):
            return simple[choice]()
        return self.schema(depth + 1) if depth < 3 else {"type": "string"}

    def schema(self, depth: int = 0) -> dict[str, Any]:
        rnd = self.rnd
        if depth >= 3:
            return self.leaf(5)
        kind = rnd.randrange(4)
        if kind == 0:
            s: dict[str, Any] = {"type": "object"} if rnd.random() < .7 else {}
            s["properties"] = {n: self.leaf(depth + 1) for n in rnd.sample(NAMES, rnd.randrange(0, 3))}
            if rnd.random() < .4:
                s["required"] = rnd.sample(NAMES, rnd.randrange(1, 3))
            closing = rnd.random()
            if closing < .3:
                s["additionalProperties"] = rnd.choice([False, self.leaf(depth + 1)])
            elif closing < .5:
                s["unevaluatedProperties"] = rnd.choice([False, self.leaf(depth + 1)])
            if rnd.random() < .3:
                s["patternProperties"] = {rnd.choice(["^x_", "^y", "^a"]): self.leaf(depth + 1)}
            if rnd.random() < .15:
                s[rnd.choice(["dependentRequired", "dependencies"])] = {rnd.choice(NAMES): [rnd.choice(NAMES)]}
            if rnd.random() < .15:
                s["propertyNames"] = {"maxLength": rnd.randrange(1, 4)}
            if rnd.random() < .2:
                s["allOf"] = [{"properties": {rnd.choice(NAMES): self.leaf(depth + 1)}}]
            return s
        if kind == 1:
            s = {"type": "array"} if rnd.random() < .7 else {}
            if rnd.random() < .5:
                s[rnd.choice(["prefixItems", "items"])] = [self.leaf(depth + 1) for _ in range(rnd.randrange(1, 3))]
            rest = rnd.random()
            if rest < .3:
                s.setdefault("items", self.leaf(depth + 1))
            elif rest < .5:
                s["unevaluatedItems"] = rnd.choice([False, self.leaf(depth + 1)])
            elif rest < .6:
                s["additionalItems"] = rnd.choice([False, self.leaf(depth + 1)])
            if rnd.random() < .3:
                s["contains"], s["minContains"] = self.leaf(depth + 1), rnd.randrange(0, 3)
            if rnd.random() < .2:
                s["maxItems"] = rnd.randrange(0, 3)
            if rnd.random() < .2:
                s["uniqueItems"] = True
            return s
        return self.leaf(depth)

    def _places(self, node: Any, out: list[tuple[Any, Any]]) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, dict) and key not in _CONTAINERS:
                    out.append((node, key))
                elif isinstance(value, dict):
                    out += [(value, k) for k, v in value.items() if isinstance(v, dict)]
                if isinstance(value, (dict, list)):
                    self._places(value, out)
        elif isinstance(node, list):
            for index, value in enumerate(node):
                if isinstance(value, dict):
                    out.append((node, index))
                self._places(value, out)

    def change(self, schema: dict[str, Any]) -> dict[str, Any]:
        """The schema with one part removed, added to or replaced."""
        rnd = self.rnd
        schema = copy.deepcopy(schema)
        places: list[tuple[Any, Any]] = []
        self._places(schema, places)
        action = rnd.random()
        if action < .25 and schema:
            schema.pop(rnd.choice(list(schema)))
        elif action < .45:
            schema.update(self.leaf(2) if rnd.random() < .5 else {"required": [rnd.choice(NAMES)]})
        elif places:
            parent, key = rnd.choice(places)
            parent[key] = self.leaf(2)
        return schema

    def pair(self) -> tuple[dict[str, Any], dict[str, Any]]:
        rnd = self.rnd
        draft = rnd.choice(DRAFTS)
        other = draft if rnd.random() < .8 else rnd.choice(DRAFTS)
        definitions = {"D": self.schema(2)}
        writer = {**self.schema(), "definitions": definitions, "$defs": definitions}
        reader = self.change(writer) if rnd.random() < .85 else self.schema()
        reader_defs = self.change(definitions) if rnd.random() < .3 else copy.deepcopy(definitions)
        reader = {**{k: v for k, v in reader.items() if k != "$schema"}, "definitions": reader_defs, "$defs": reader_defs}
        for schema, uri in ((writer, draft), (reader, other)):
            if uri:
                schema["$schema"] = uri
        return reader, writer
