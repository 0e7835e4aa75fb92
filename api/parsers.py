"""The API's JSON parser: refuses what the standard library would choke on or silently merge.

``json.loads`` recurses once per nested bracket, so a 2 KB body of 1,000
``[`` raises RecursionError (a 500) before any view code runs; and a key
sent twice keeps only its last value. Request bodies here are flat records,
so nesting deeper than ``MAX_DEPTH`` is refused before decoding, and a
repeated key is an error: both are the API's 400 ``parse_error``. So are
NaN and Infinity (not JSON) and a lone surrogate escape such as ``"\ud800"``
(valid JSON syntax, but no text: it cannot be stored or logged as UTF-8).
"""

import codecs
import json
import re

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_DEPTH = 20
# Strings (which may contain brackets) are skipped; only structure counts.
# The string branch cannot fail once started (possessive, and an
# unterminated string runs to the end), so the scan is linear in the body.
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.?)*+(?:"|\Z)|[\[\]{}]', re.DOTALL)


def nesting_depth(body: bytes) -> int:
    depth = deepest = 0
    for match in _TOKENS.finditer(body):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                break
        elif token in (b"]", b"}"):
            depth -= 1
    return deepest


def _no_repeated_keys(pairs):
    keys = [key for key, _ in pairs]
    if len(keys) != len(set(keys)):
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        raise ParseError(f"JSON parse error - repeated key: {', '.join(repeated)}.")
    return dict(pairs)


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        body = stream.read() if stream is not None else b""
        if nesting_depth(body) > MAX_DEPTH:
            raise ParseError(f"JSON parse error - nested deeper than {MAX_DEPTH} levels.")
        try:
            text = codecs.decode(body, encoding)
            data = json.loads(text, object_pairs_hook=_no_repeated_keys, parse_constant=_refuse_constant)
        except (ValueError, RecursionError, LookupError) as exc:  # LookupError: an unknown charset
            raise ParseError(f"JSON parse error - {exc}") from None
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ParseError("JSON parse error - a string is not valid Unicode (lone surrogate).") from None
        return data


def _refuse_constant(name):
    raise ValueError(f"{name} is not JSON")
