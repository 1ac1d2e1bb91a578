"""The ``disk_usage`` handler, in Python: the fullest each mount point has been.

A ``disk_usage`` payload is a JSON object that maps mount points to the
fraction of their space in use, a number in 0..=1::

    {"/": 0.71, "/home": 0.42}

The aggregate keeps the largest fraction seen for each mount point and the
number of payloads applied, and renders as::

    {"max": {"/": 0.71, "/home": 0.42}, "count": 2}

(without the spaces). A payload is applied whole or not at all: one bad
fraction refuses the payload, which then neither changes a maximum nor
counts. An empty object is a valid payload: it changes no maximum, but
counts.

The state is UTF-8 JSON, ``{"v":1,"max":{...},"count":n}``, written the same
way by every language's version of this handler, so that any of them can
carry on from a state another wrote. Mount points are sorted by code point
and numbers are written as the shortest decimal that reads back to the same
value, never in exponent form and always with a fractional part (``1.0``).

Build it into a component with ``build.sh``; see README.md.
"""

import itertools
import json
import re

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import types

#: What the handler says about itself (``metadata``).
NAME = "disk_usage"
VERSION = "0.1.0"
#: The payload type handled, as it arrives in ``json-batch.kind``.
KIND = "disk_usage"

#: The version of the state's layout, its ``"v"`` field.
STATE_VERSION = 1
#: The fields of a state.
STATE_FIELDS = ("v", "max", "count")

#: The reason given for each payload of a batch of another type.
UNSUPPORTED_TYPE = "unsupported type"

#: The largest count that every reader of the state holds exactly (a
#: JavaScript number is a double); the count stops there.
MAX_COUNT = 2**53 - 1

#: The deepest nesting of arrays and objects read: a payload is one level
#: deep and a state two, and deeper text could exhaust the stack of the
#: parser (which would trap) before the parser said so.
MAX_DEPTH = 128

#: A backslash escape in a JSON string, and a JSON string without them.
ESCAPE = re.compile(r"\\[\s\S]")
STRING = re.compile(r'"[^"]*"')
#: Anything but an opening or closing bracket or brace.
NOT_BRACKET = re.compile(r"[^\[\]{}]+")
#: Each bracket or brace, as a step in depth.
DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}

#: A surrogate code point: in a string read from JSON, always a lone one.
SURROGATE = re.compile("[\ud800-\udfff]")

#: Names quoted in a reason are cut to this many characters, so that a
#: reason stays short whatever the payload holds.
MAX_QUOTED_CHARS = 64


class Invalid(Exception):
    """A payload, or a state, that cannot be read; the text says why."""


# ---------------------------------------------------------------------------
# JSON in and out


def _no_constant(name):
    """Refuses ``NaN``, ``Infinity`` and ``-Infinity``: they are not JSON."""
    raise ValueError(f"{name} is not JSON")


def too_deep(text):
    """Whether arrays and objects nest deeper than ``MAX_DEPTH`` in JSON text.

    Brackets in strings do not count. Done with regular expressions and
    iterators, which run in C, so that it stays fast on long text.
    """
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False
    brackets = NOT_BRACKET.sub("", STRING.sub("", ESCAPE.sub("", text)))
    depths = itertools.accumulate(map(DEPTH_STEP.__getitem__, brackets))
    return max(depths, default=0) > MAX_DEPTH


def parse_json(text):
    """Reads JSON text, with every number as a float (as in JavaScript).

    Integers read as floats too, so that ``1`` and ``1.0`` mean the same and
    an integer too large for a float reads as an infinity rather than as an
    integer that no float holds.
    """
    if too_deep(text):
        raise Invalid(f"nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text, parse_int=float, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        # ValueError covers json.JSONDecodeError.
        raise Invalid("not valid json") from None


def is_number(value):
    """Whether a parsed JSON value is a number (``True`` is not one)."""
    return type(value) is float


def format_number(value):
    """Writes a finite float as a JSON number.

    The digits are the shortest that read back to the same value (``repr``),
    written out in full rather than in exponent form, and an integral value
    keeps a fractional part (``1.0``, not ``1``).
    """
    text = repr(value)
    mantissa, _, exponent = text.partition("e")
    if exponent:
        sign = "-" if mantissa.startswith("-") else ""
        whole, _, fraction = mantissa.lstrip("-").partition(".")
        digits = whole + fraction
        # Where the decimal point falls in `digits`.
        point = len(whole) + int(exponent)
        if point <= 0:
            text = f"{sign}0.{'0' * -point}{digits}"
        elif point >= len(digits):
            text = sign + digits + "0" * (point - len(digits))
        else:
            text = f"{sign}{digits[:point]}.{digits[point:]}"
    if "." not in text:
        text += ".0"
    return text


def quote(name):
    """Quotes a name as a JSON string for a reason, cut to a short length.

    A lone surrogate, which no UTF-8 text holds, is written as an escape
    (as JavaScript's ``JSON.stringify`` does).
    """
    if len(name) > MAX_QUOTED_CHARS:
        name = name[:MAX_QUOTED_CHARS] + "\N{HORIZONTAL ELLIPSIS}"
    text = json.dumps(name, ensure_ascii=False)
    return SURROGATE.sub(lambda char: f"\\u{ord(char.group()):04x}", text)


def is_well_formed(name):
    """Whether a string holds only Unicode scalar values.

    JSON can spell a lone surrogate (``"\\ud800"``), which no UTF-8 text
    holds: such a name could not be written to the state as it is.
    """
    return SURROGATE.search(name) is None


# ---------------------------------------------------------------------------
# Usage: one payload, or the maxima of a state


def read_usage(usage):
    """Checks a parsed mapping of mount point to used fraction.

    Returns the mapping with each fraction as a float; raises ``Invalid``
    naming the first mount point (in sorted order) whose fraction is wrong.
    """
    if not isinstance(usage, dict):
        raise Invalid("not a json object")
    checked = {}
    for mount in sorted(usage):
        if not is_well_formed(mount):
            raise Invalid("mount point is not valid unicode")
        fraction = usage[mount]
        if not is_number(fraction):
            raise Invalid(f"mount {quote(mount)}: not a number")
        if fraction != fraction or fraction in (float("inf"), float("-inf")):
            raise Invalid(f"mount {quote(mount)}: not a finite number")
        if not 0.0 <= fraction <= 1.0:
            raise Invalid(
                f"mount {quote(mount)}: {format_number(fraction)} is outside 0..=1"
            )
        # Adding zero turns -0.0 into 0.0, so that zero is written one way.
        checked[mount] = fraction + 0.0
    return checked


def read_payload(text):
    """Reads and checks the JSON text of one payload (see ``read_usage``).

    A byte order mark before the text is ignored, as RFC 8259 allows: the
    JavaScript version of this handler never sees one (its runtime drops it
    when it receives the string), and every version reads payloads alike.
    """
    return read_usage(parse_json(text.removeprefix("\N{ZERO WIDTH NO-BREAK SPACE}")))


class Aggregate:
    """The largest used fraction of each mount point, and the payloads applied."""

    def __init__(self, maxima=None, count=0):
        self.maxima = maxima if maxima is not None else {}
        self.count = count

    @classmethod
    def decode(cls, state):
        """Reads state bytes written by ``encode``; empty bytes are empty.

        Raises ``Invalid`` when the bytes are not such a state.
        """
        if not state:
            return cls()
        try:
            text = state.decode("utf-8")
        except UnicodeDecodeError:
            raise Invalid("not utf-8") from None
        document = parse_json(text)
        if not isinstance(document, dict):
            raise Invalid("not a json object")
        if "v" not in document:
            raise Invalid('no "v" field')
        version = document["v"]
        if version != STATE_VERSION or not is_number(version):
            if is_number(version) and version.is_integer():
                raise Invalid(f"version {int(version)} is not supported")
            raise Invalid('"v" is not a version number')
        for field in sorted(document):
            if field not in STATE_FIELDS:
                raise Invalid(f"unknown field {quote(field)}")
        if "max" not in document:
            raise Invalid('no "max" field')
        if not isinstance(document["max"], dict):
            raise Invalid('"max" is not an object')
        maxima = read_usage(document["max"])
        if "count" not in document:
            raise Invalid('no "count" field')
        count = document["count"]
        if not (
            is_number(count) and count.is_integer() and 0 <= count <= MAX_COUNT
        ):
            raise Invalid('"count" is not a whole number of payloads')
        return cls(maxima, int(count))

    def add(self, usage):
        """Applies one checked payload (see ``read_usage``)."""
        for mount, fraction in usage.items():
            if mount not in self.maxima or fraction > self.maxima[mount]:
                self.maxima[mount] = fraction
        self.count = min(self.count + 1, MAX_COUNT)

    def _maxima_json(self):
        entries = (
            f"{json.dumps(mount, ensure_ascii=False)}:{format_number(fraction)}"
            for mount, fraction in sorted(self.maxima.items())
        )
        return "{" + ",".join(entries) + "}"

    def encode(self):
        """Writes the state for the host to keep."""
        text = f'{{"v":{STATE_VERSION},"max":{self._maxima_json()},"count":{self.count}}}'
        return text.encode("utf-8")

    def render(self):
        """Renders the aggregate as a JSON object, for operators."""
        return f'{{"max":{self._maxima_json()},"count":{self.count}}}'


def read_state(state):
    """``Aggregate.decode``, with a failure raised as the call's error."""
    try:
        return Aggregate.decode(state)
    except Invalid as why:
        raise Err(f"cannot read state: {why}") from None


def payload_count(batch):
    """The number of payloads in a batch of any type."""
    if isinstance(batch, types.Batch_CpuUsage):
        return len(batch.value.lengths)
    if isinstance(batch, types.Batch_Json):
        return len(batch.value.values)
    # load-avg and last-kernel-upgrade: one list entry per payload.
    return len(batch.value)


# ---------------------------------------------------------------------------
# The exported interface


class Handler(exports.Handler):
    """The ``handler`` interface of the ``plugin`` world."""

    def metadata(self):
        return types.Metadata(name=NAME, version=VERSION, types=[KIND])

    def apply(self, state, batch):
        aggregate = read_state(state)
        if not (isinstance(batch, types.Batch_Json) and batch.value.kind == KIND):
            rejected = [
                types.Rejection(index=index, reason=UNSUPPORTED_TYPE)
                for index in range(payload_count(batch))
            ]
            return types.Applied(state=aggregate.encode(), rejected=rejected)

        rejected = []
        for index, text in enumerate(batch.value.values):
            try:
                usage = read_payload(text)
            except Invalid as why:
                rejected.append(types.Rejection(index=index, reason=str(why)))
                continue
            aggregate.add(usage)
        return types.Applied(state=aggregate.encode(), rejected=rejected)

    def render(self, state):
        return read_state(state).render()
