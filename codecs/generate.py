#!/usr/bin/env python3
"""Generate the codec artefacts from codecs/spec/citynode.json.

    python codecs/generate.py          write the artefacts
    python codecs/generate.py --check  exit 1 if a committed artefact is out of date (CI runs this)

Artefacts: citynode_codec/_tables.py (Python and MicroPython), citynode_codec/_fast.py (straight-line
CPython decoders for the bridge), js/citynode.js (TS013 codec for The Things Stack and ChirpStack),
js/examples.json (TS013 example vectors), ttn/citynode-codec.yaml (TTN device-repository codec
definition) and docs/PAYLOADS.md (the payload reference for people). The spec is validated first; an
inconsistent spec stops here, with the message and field that are wrong, instead of producing a codec
that misreads payloads.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from fractions import Fraction
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPEC_PATH = HERE / "spec" / "citynode.json"
TABLES_PATH = HERE / "citynode_codec" / "_tables.py"
FAST_PATH = HERE / "citynode_codec" / "_fast.py"
JS_TEMPLATE = HERE / "js" / "codec.template.js"
JS_PATH = HERE / "js" / "citynode.js"
EXAMPLES_PATH = HERE / "js" / "examples.json"
TTN_PATH = HERE / "ttn" / "citynode-codec.yaml"
DOCS_PATH = HERE.parent / "docs" / "PAYLOADS.md"

KINDS = {"number": 0, "uint": 0, "enum": 1, "bool": 2, "semver": 3}
OP_FIELD, OP_OPTIONAL, OP_PRESENCE, OP_FLAGS, OP_SWITCH, OP_SERIES = range(6)
DIRS = {"uplink": 0, "downlink": 1}
WIDTH_BITS = 4


class SpecError(Exception):
    pass


def _num_text(x) -> str:
    f = float(x)
    return str(int(f)) if f.is_integer() else repr(f)


def _decimals(div: int) -> int:
    d = 0
    while (10**d) % div:
        d += 1
        if d > 9:
            raise SpecError(f"resolution 1/{div} has no finite decimal form")
    return d


def build_field(name: str, f: dict) -> list:
    """[name, kind, bits, mul, div, off, lo, hi, missing, default, values, dec, lo_txt, hi_txt]"""
    kind = f.get("type")
    if kind not in KINDS:
        raise SpecError(f"field {name}: unknown type {kind!r}")
    if kind == "semver":
        parts = f["bits"]
        if len(parts) != 3:
            raise SpecError(f"field {name}: semver needs three bit widths")
        return [name, 3, sum(parts), 1, 1, 0, 0, (1 << sum(parts)) - 1, None, f.get("default"), parts, 0, "", ""]
    bits = f.get("bits", 1 if kind == "bool" else None)
    if not isinstance(bits, int) or not 1 <= bits <= 32:
        raise SpecError(f"field {name}: bits must be 1..32")
    if kind == "bool":
        return [name, 2, 1, 1, 1, 0, 0, 1, None, f.get("default"), None, 0, "", ""]
    if kind == "enum":
        values = f["values"]
        if len(values) > (1 << bits) or len(set(values)) != len(values):
            raise SpecError(f"field {name}: {len(values)} distinct enum values do not fit {bits} bits")
        return [name, 1, bits, 1, 1, 0, 0, len(values) - 1, None, f.get("default"), values, 0, "", ""]
    if kind == "uint":
        hi = (1 << bits) - 1
        return [name, 0, bits, 1, 1, 0, 0, hi, None, f.get("default"), None, 0, "0", str(hi)]
    res = Fraction(str(f["resolution"]))
    if res.numerator != 1 and res.denominator != 1:
        raise SpecError(f"field {name}: resolution must be 1/n or a whole number")
    off = Fraction(str(f.get("offset", 0))) / res
    lo = Fraction(str(f["min"])) / res - off
    hi = Fraction(str(f["max"])) / res - off
    for label, v in (("offset", off), ("min", lo), ("max", hi)):
        if v.denominator != 1:
            raise SpecError(f"field {name}: {label} is not a whole number of resolution steps")
    lo, hi, off = int(lo), int(hi), int(off)
    if not 0 <= lo <= hi < (1 << bits):
        raise SpecError(f"field {name}: raw range {lo}..{hi} does not fit {bits} bits")
    missing = f.get("missing")
    if missing is not None and (lo <= missing <= hi or not 0 <= missing < (1 << bits)):
        raise SpecError(f"field {name}: missing code {missing} collides with the value range or bits")
    if "unit" not in f or "doc" not in f:
        raise SpecError(f"field {name}: numbers need a unit and a doc")
    return [name, 0, bits, res.numerator, res.denominator, off, lo, hi, missing, f.get("default"), None,
            _decimals(res.denominator), _num_text(f["min"]), _num_text(f["max"])]


class Compiler:
    """Turns layouts into flat op lists (groups inlined) and checks their references."""

    def __init__(self, spec: dict):
        self.spec = spec
        self.fields = {n: build_field(n, f) for n, f in spec["fields"].items()}
        self.flag_sets = spec["flag_sets"]
        for n, fs in self.flag_sets.items():
            if len(fs["values"]) > fs["bits"]:
                raise SpecError(f"flag set {n}: more names than bits")

    def field(self, msg: str, name: str) -> list:
        if name not in self.fields:
            raise SpecError(f"{msg}: unknown field {name}")
        return self.fields[name]

    def ops(self, msg: str, items: list, seen: dict) -> list:
        out = []
        for item in items:
            if "group" in item:
                out += self.ops(msg, self.spec["groups"][item["group"]], seen)
            elif "field" in item:
                f = self.field(msg, item["field"])
                if item.get("optional"):
                    if seen.get("presence", {}).get(f[0]) is None:
                        raise SpecError(f"{msg}: optional {f[0]} has no presence bit before it")
                    out.append([OP_OPTIONAL, f[0]])
                else:
                    out.append([OP_FIELD, f[0]])
                seen.setdefault("fields", set()).add(f[0])
            elif "presence" in item:
                for n in item["presence"]:
                    self.field(msg, n)
                    seen.setdefault("presence", {})[n] = True
                out.append([OP_PRESENCE, list(item["presence"])])
            elif "flags" in item:
                fs = self.flag_sets[item["flags"]]
                out.append([OP_FLAGS, fs["bits"], list(fs["values"])])
            elif "switch" in item:
                key = item["switch"]
                f = self.field(msg, key)
                if f[1] != 1 or key not in seen.get("fields", ()):
                    raise SpecError(f"{msg}: switch on {key} needs an enum field read before it")
                if set(item["cases"]) != set(f[10]):
                    raise SpecError(f"{msg}: switch on {key} must have a case for every value")
                cases = {v: self.ops(msg, item["cases"][v], copy.deepcopy(seen)) for v in f[10]}
                out.append([OP_SWITCH, key, cases])
            elif "series" in item:
                count = item["count"]
                if count not in seen.get("fields", ()):
                    raise SpecError(f"{msg}: series count {count} must be read before the series")
                names = [self.field(msg, n)[0] for n in item["series"]]
                for n in names:
                    if self.fields[n][1] != 0 or self.fields[n][2] + 1 >= (1 << WIDTH_BITS):
                        raise SpecError(f"{msg}: series field {n} must be a number of at most 13 bits")
                offset = item.get("offset")
                if offset is not None and (offset not in names or not seen.get("presence", {}).get(offset)):
                    raise SpecError(f"{msg}: series offset {offset} must be an optional series field")
                out.append([OP_SERIES, names, count, offset])
                seen["series"] = count
            else:
                raise SpecError(f"{msg}: unknown layout item {item}")
        return out

    def messages(self) -> dict:
        out = {}
        used = {0: {"fport": set(), "format": set()}, 1: {"fport": set(), "format": set()}}
        for name, m in self.spec["messages"].items():
            d = DIRS[m["direction"]]
            fport = m["fport"]
            if not 1 <= fport <= 223 or fport in used[d]["fport"]:
                raise SpecError(f"{name}: fPort {fport} is invalid or used twice")
            used[d]["fport"].add(fport)
            if m.get("encoding") == "cbor":
                out[name] = {"dir": d, "fport": fport, "format": None, "version": m["version"], "ops": None,
                             "series": None}
                continue
            fmt = m["format"]
            if not 1 <= fmt < 15 or fmt in used[d]["format"]:
                raise SpecError(f"{name}: format {fmt} is invalid or used twice")
            used[d]["format"].add(fmt)
            seen: dict = {}
            ops = self.ops(name, m["layout"], seen)
            out[name] = {"dir": d, "fport": fport, "format": fmt, "version": m["version"], "ops": ops,
                         "series": _find_series(ops)}
        return out


def _find_series(ops: list):
    for op in ops:
        if op[0] == OP_SERIES:
            return [op[2], op[3]]
        if op[0] == OP_SWITCH:
            for case in op[2].values():
                found = _find_series(case)
                if found:
                    return found
    return None


def load_spec(path: Path = SPEC_PATH) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def compile_spec(spec: dict) -> tuple[Compiler, dict]:
    c = Compiler(spec)
    msgs = c.messages()
    ack = spec["fields"]["command"]["values"]
    downlinks = sorted((m["format"], n) for n, m in msgs.items() if m["dir"] == 1)
    if [n for _, n in downlinks] != ack[1:] or [f for f, _ in downlinks] != list(range(1, len(ack))):
        raise SpecError("field command must list 'none' then every downlink in format order")
    return c, msgs


# --------------------------------------------------------------------------------------- Python


def _py(v) -> str:
    if isinstance(v, list):
        inner = ", ".join(_py(x) for x in v)
        return "(" + inner + ("," if len(v) == 1 else "") + ")"
    return repr(v)


def _py_ops(ops: list) -> str:
    parts = []
    for op in ops:
        if op[0] in (OP_FIELD, OP_OPTIONAL):
            parts.append(f"({op[0]}, F_{op[1]})")
        elif op[0] == OP_PRESENCE:
            parts.append(f"({OP_PRESENCE}, {_py(op[1])})")
        elif op[0] == OP_FLAGS:
            parts.append(f"({OP_FLAGS}, {op[1]}, {_py(op[2])})")
        elif op[0] == OP_SWITCH:
            cases = ", ".join(f"{k!r}: {_py_ops(v)}" for k, v in op[2].items())
            parts.append(f"({OP_SWITCH}, {op[1]!r}, {{{cases}}})")
        else:
            fields = ", ".join(f"F_{n}" for n in op[1])
            parts.append(f"({OP_SERIES}, ({fields},), {op[2]!r}, {op[3]!r})")
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def render_python(spec: dict, c: Compiler, msgs: dict) -> str:
    lines = [
        "# Generated by codecs/generate.py from codecs/spec/citynode.json. Do not edit: change the spec and",
        "# run `make codecs`. Field: (name, kind, bits, mul, div, offset, lo, hi, missing, default, values,",
        "# decimals, min text, max text); value = (raw + offset) * mul / div. Ops: see codec.py.",
        "",
        f"SPEC_VERSION = {spec['spec_version']!r}",
        f"FORMAT_BITS = {spec['encoding']['header']['bits']}",
        "",
        "ERRORS = {",
    ]
    lines += [f"    {k!r}: {v!r}," for k, v in spec["errors"].items()]
    lines += ["}", ""]
    for name, f in c.fields.items():
        lines.append(f"F_{name} = {_py(f)}")
    lines += ["", "FIELDS = {"] + [f"    {n!r}: F_{n}," for n in c.fields] + ["}", "", "MESSAGES = {"]
    for name, m in msgs.items():
        ops = "None" if m["ops"] is None else _py_ops(m["ops"])
        fmt = "None" if m["format"] is None else m["format"]
        lines.append(f"    {name!r}: ({name!r}, {m['dir']}, {m['fport']}, {fmt}, {m['version']}, {ops}),")
    lines += ["}", ""]
    for label, d in (("UPLINK_PORTS", 0), ("DOWNLINK_PORTS", 1)):
        lines.append(f"{label} = {{")
        lines += [f"    {m['fport']}: MESSAGES[{n!r}]," for n, m in msgs.items() if m["dir"] == d]
        lines.append("}")
    lines.append("# message -> (count field, offset field or None)")
    lines.append("SERIES = {" + ", ".join(f"{n!r}: {_py(m['series'])}" for n, m in msgs.items() if m["series"]) + "}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------- fast path


class _Fast:
    """Straight-line CPython decoder source for one message (no series: those use the interpreter).

    Field positions are static where the layout allows (`o` carries the length of optional fields read so
    far). Reading past the end makes a negative shift, which raises ValueError; the function returns None
    for that and for anything else irregular (range, unknown code, length, padding), and the caller then
    runs the interpreter, which produces the error text.
    """

    def __init__(self, c: Compiler):
        self.c = c
        self.lines: list[str] = []
        self.consts: dict[str, str] = {}
        self.pos = 0  # static bit position; the dynamic part is the variable `o`
        self.dynamic = False

    def const(self, prefix: str, value: str, numbered: bool = True) -> str:
        for name, v in self.consts.items():
            if v == value:
                return name
        name = f"{prefix}{sum(1 for k in self.consts if k.startswith(prefix))}" if numbered else prefix
        self.consts[name] = value
        return name

    def emit(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)

    def end(self) -> str:
        """The bit position just read up to, as an expression over `total`'s complement."""
        return f"({self.pos} + o)" if self.dynamic else str(self.pos)

    def read(self, depth: int, bits: int) -> None:
        self.pos += bits
        self.emit(depth, f"x = (n >> (total - {self.end()})) & {(1 << bits) - 1}")

    def ops(self, ops: list, depth: int) -> bool:
        for op in ops:
            code = op[0]
            if code == OP_FIELD:
                self.field(self.c.fields[op[1]], depth)
            elif code == OP_OPTIONAL:
                f = self.c.fields[op[1]]
                if not self.dynamic:
                    self.emit(depth, "o = 0")
                    self.dynamic = True
                self.emit(depth, f"if q_{op[1]}:")
                self.field(f, depth + 1)
                self.pos -= f[2]
                self.emit(depth + 1, f"o += {f[2]}")
            elif code == OP_PRESENCE:
                for name in op[1]:
                    self.pos += 1
                    self.emit(depth, f"q_{name} = (n >> (total - {self.end()})) & 1")
            elif code == OP_FLAGS:
                table = tuple(tuple(op[2][i] for i in range(len(op[2])) if x & (1 << (op[1] - 1 - i)))
                              for x in range(1 << op[1]))
                const = self.const("_FLAGS", repr(table))
                self.read(depth, op[1])
                self.emit(depth, f"d['flags'] = list({const}[x])")
            elif code == OP_SWITCH:
                start, dynamic = self.pos, self.dynamic
                if not dynamic:
                    self.emit(depth, "o = 0")
                    self.dynamic = True
                first = True
                for value, case in op[2].items():
                    self.emit(depth, f"{'if' if first else 'elif'} d[{op[1]!r}] == {value!r}:")
                    self.pos = start
                    if not self.ops(case, depth + 1):
                        return False
                    self.emit(depth + 1, f"o += {self.pos - start}")
                    first = False
                self.pos = start
            else:
                return False
        return True

    def field(self, f: list, depth: int) -> None:
        name, kind, bits, mul, div, off, lo, hi, missing = f[:9]
        self.read(depth, bits)
        if kind == 0:
            value = "x" if off == 0 else f"(x {'+' if off > 0 else '-'} {abs(off)})"
            if mul != 1:
                value = f"{value} * {mul}"
            if div != 1:
                value = f"{value} / {div}"
            # The common case (a valid value) is tested first; missing and out-of-range come after.
            valid = f"{lo} <= x <= {hi}" if lo > 0 else f"x <= {hi}"
            if hi == (1 << bits) - 1 and lo == 0:
                self.emit(depth, f"d[{name!r}] = {value}")
            else:
                self.emit(depth, f"if {valid}:")
                self.emit(depth + 1, f"d[{name!r}] = {value}")
                if missing is not None:
                    self.emit(depth, f"elif x == {missing}:")
                    self.emit(depth + 1, f"d[{name!r}] = None")
                self.emit(depth, "else:")
                self.emit(depth + 1, "return None")
        elif kind == 1:
            const = self.const(f"_ENUM_{name}", repr(tuple(f[10])), numbered=False)
            if len(f[10]) < (1 << bits):
                self.emit(depth, f"if x >= {len(f[10])}:")
                self.emit(depth + 1, "return None")
            self.emit(depth, f"d[{name!r}] = {const}[x]")
        elif kind == 2:
            self.emit(depth, f"d[{name!r}] = x == 1")
        else:
            a, b, c = f[10]
            self.emit(depth, f"d[{name!r}] = '%d.%d.%d' % (x >> {b + c}, (x >> {c}) & {(1 << b) - 1}, "
                             f"x & {(1 << c) - 1})")

    def function(self, name: str, fmt_bits: int, ops: list) -> list[str] | None:
        self.lines, self.pos, self.dynamic = [], fmt_bits, False
        self.emit(0, f"def _{name}(b):")
        self.emit(1, "total = len(b) << 3")
        self.emit(1, "n = int.from_bytes(b, 'big')")
        self.emit(1, f"d = {{'message': {name!r}}}")
        self.emit(1, "try:")
        if not self.ops(ops, 2):
            return None
        self.emit(2, f"rest = total - {self.end()}")
        self.emit(1, "except ValueError:  # a negative shift: the payload ended inside a field")
        self.emit(2, "return None")
        self.emit(1, "if rest > 7 or n & ((1 << rest) - 1):")
        self.emit(2, "return None")
        self.emit(1, "return d")
        return self.lines


def render_fast(spec: dict, c: Compiler, msgs: dict) -> str:
    fast = _Fast(c)
    funcs, ports = [], {0: [], 1: []}
    for name, m in msgs.items():
        if m["ops"] is None:
            continue
        lines = fast.function(name, spec["encoding"]["header"]["bits"], m["ops"])
        if lines is None:
            continue
        funcs.append("\n".join(lines))
        ports[m["dir"]].append(f"    {m['fport']}: ({m['format']}, _{name}),")
    head = ["# Generated by codecs/generate.py from codecs/spec/citynode.json. Do not edit.",
            "# Straight-line decoders for CPython (the bridge), generated from the same tables as the interpreter",
            "# in codec.py: they return the decoded data, or None for anything irregular, and codec.py then",
            "# runs the interpreter, which says what is wrong. Not loaded on MicroPython.", ""]
    head += [f"{k} = {v}" for k, v in fast.consts.items()]
    body = "\n\n\n".join(funcs)
    tail = ["UPLINK = {"] + ports[0] + ["}", "DOWNLINK = {"] + ports[1] + ["}"]
    return "\n".join(head) + "\n\n\n" + body + "\n\n\n" + "\n".join(tail) + "\n"


# ------------------------------------------------------------------------------------------- JS


def render_js(spec: dict, c: Compiler, msgs: dict) -> str:
    table = {
        "specVersion": spec["spec_version"],
        "formatBits": spec["encoding"]["header"]["bits"],
        "errors": spec["errors"],
        "fields": c.fields,
        "messages": {n: [n, m["dir"], m["fport"], m["format"], m["version"], m["ops"]] for n, m in msgs.items()},
        "uplinkPorts": {str(m["fport"]): n for n, m in msgs.items() if m["dir"] == 0},
        "downlinkPorts": {str(m["fport"]): n for n, m in msgs.items() if m["dir"] == 1},
        "series": {n: m["series"] for n, m in msgs.items() if m["series"]},
    }
    template = JS_TEMPLATE.read_text(encoding="utf-8")
    marker = "/*@SPEC@*/null"
    if marker not in template:
        raise SpecError(f"{JS_TEMPLATE} lacks the {marker} marker")
    body = json.dumps(table, ensure_ascii=False, separators=(",", ":"))
    header = ("// Generated by codecs/generate.py from codecs/spec/citynode.json and codecs/js/codec.template.js.\n"
              "// Do not edit: change the template or the spec and run `make codecs`.\n")
    return header + template.replace(marker, body)


# ------------------------------------------------------------------------------------- examples


def examples(spec: dict) -> list[dict]:
    """All examples as TS013 vectors: {type, description, input, output}."""
    out = []
    for m in spec["messages"].values():
        for ex in m.get("examples", []):
            if m["direction"] == "uplink":
                out.append({"type": "uplink", "description": ex["description"], "input": ex["input"],
                            "output": ex["output"]})
            else:
                out.append({"type": "downlink-encode", "description": ex["description"], "input": ex["input"],
                            "output": ex["output"]})
                if "bytes" in ex["output"]:
                    out.append({"type": "downlink-decode", "description": ex["description"],
                                "input": {"fPort": ex["output"]["fPort"], "bytes": ex["output"]["bytes"]},
                                "output": {"data": ex["input"]["data"]}})
    for ex in spec.get("error_examples", []):
        out.append({"type": ex.get("type", "uplink"), **{k: ex[k] for k in ("description", "input", "output")}})
    return out


def render_examples(spec: dict) -> str:
    return json.dumps(examples(spec), indent=1, ensure_ascii=False) + "\n"


def render_ttn(spec: dict) -> str:
    def block(kind: str) -> list[str]:
        rows = [e for e in examples(spec) if e["type"] == kind]
        lines = ["  fileName: citynode.js", "  examples:"]
        for e in rows:
            lines.append(f"    - description: {json.dumps(e['description'], ensure_ascii=False)}")
            lines.append(f"      input: {json.dumps(e['input'], ensure_ascii=False)}")
            lines.append(f"      output: {json.dumps(e['output'], ensure_ascii=False)}")
        return lines

    lines = ["# Generated by codecs/generate.py from codecs/spec/citynode.json. Do not edit.",
             "# The Things Network device-repository codec definition; its examples run as tests there."]
    for key, kind in (("uplinkDecoder", "uplink"), ("downlinkEncoder", "downlink-encode"),
                      ("downlinkDecoder", "downlink-decode")):
        lines.append(f"{key}:")
        lines += block(kind)
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------- markdown


def _layout_rows(c: Compiler, ops: list, rows: list, pos: list, cond: str = "") -> None:
    """Rows of (bits, name, meaning) for the payload reference; pos[0] is the running bit offset or None."""

    def at(bits: int) -> str:
        if pos[0] is None:
            return "…"
        text = f"{pos[0]}–{pos[0] + bits - 1}" if bits > 1 else str(pos[0])
        pos[0] += bits
        return text

    for op in ops:
        code = op[0]
        if code in (OP_FIELD, OP_OPTIONAL):
            f = c.fields[op[1]]
            spec = c.spec["fields"][op[1]]
            if code == OP_OPTIONAL:
                rows.append(("…", str(f[2]), f"`{f[0]}`", f"only if its presence bit is 1. {_meaning(f, spec)}"))
                pos[0] = None
            else:
                rows.append((at(f[2]), str(f[2]), f"`{f[0]}`", (cond + _meaning(f, spec)).strip()))
        elif code == OP_PRESENCE:
            for name in op[1]:
                rows.append((at(1), "1", "presence", f"1 if `{name}` follows"))
        elif code == OP_FLAGS:
            names = ", ".join(f"{op[1] - 1 - i}: `{n}`" for i, n in enumerate(op[2]))
            rows.append((at(op[1]), str(op[1]), "`flags`", f"bit set = flag raised ({names}; bit 0 is the last)"))
        elif code == OP_SWITCH:
            start = pos[0]
            for value, case in op[2].items():
                pos[0] = start
                rows.append(("", "", f"*if `{op[1]}` is {value}*", ""))
                _layout_rows(c, case, rows, pos)
            pos[0] = None
        else:
            rows.append((at(1), "1", "gaps", "1 if some sample lacks a value; then each series starts with a "
                                              "presence mask of sample_count bits"))
            pos[0] = None
            for name in op[1]:
                f = c.fields[name]
                when = "only if its presence bit is 1: " if name in c.spec["fields"] and op[3] == name else ""
                rows.append(("…", f"{f[2]} + 4 + (n−1)·w", f"series `{name}`",
                             f"{when}first raw value, delta width w, zigzag deltas. "
                             f"{_meaning(f, c.spec['fields'][name])}"))


def _meaning(f: list, spec: dict) -> str:
    kind = spec["type"]
    if kind == "enum":
        return "; ".join(f"{i} = {v}" for i, v in enumerate(spec["values"])) + "."
    if kind == "bool":
        return "0 = false, 1 = true. " + spec.get("doc", "")
    if kind == "semver":
        return f"major.minor.patch in {'/'.join(map(str, spec['bits']))} bits."
    if kind == "uint":
        return spec.get("doc", "")
    res = spec["resolution"]
    off = spec.get("offset", 0)
    formula = f"raw × {res}" + (f" {'+' if off >= 0 else '−'} {abs(off)}" if off else "")
    missing = f"; raw {spec['missing']} = missing (null)" if "missing" in spec else ""
    return (f"{formula} {spec['unit']}, {_num_text(spec['min'])}…{_num_text(spec['max'])}{missing}. "
            f"{spec.get('doc', '')}")


def render_markdown(spec: dict, c: Compiler, msgs: dict) -> str:
    out = ["<!-- Generated by codecs/generate.py from codecs/spec/citynode.json. Do not edit. -->",
           f"# citynode payloads (spec {spec['spec_version']})", "",
           "Every compact payload is a bit stream, most significant bit first. It starts with a 4-bit **format**",
           "code that must match the fPort's message; numbers are `raw × resolution + offset`; a field's",
           "*missing* code means the sensor gave no value (decoded as `null`, never as zero); the last byte is",
           "padded with zero bits. To decode by hand: write the bytes as bits, cut them at the positions below.",
           "`citynode decode --port N HEX` does it for you.", "",
           "| message | direction | fPort | format | doc |", "|---|---|---|---|---|"]
    for name, m in spec["messages"].items():
        fmt = m.get("format", "CBOR")
        out.append(f"| [`{name}`](#{name}) | {m['direction']} | {m['fport']} | {fmt} | {m['doc']} |")
    for name, m in spec["messages"].items():
        out += ["", f"## {name}", "", m["doc"], ""]
        if msgs[name]["ops"] is not None:
            rows = [("0–3", "4", "format", f"{m['format']} ({name} version {m['version']})")]
            _layout_rows(c, msgs[name]["ops"], rows, [4])
            out += ["| bits | width | field | meaning |", "|---|---|---|---|"]
            out += [f"| {a} | {b} | {n} | {d} |" for a, b, n, d in rows]
        for ex in m.get("examples", []):
            if m["direction"] == "uplink":
                hexs = bytes(ex["input"]["bytes"]).hex(" ")
                out += ["", f"*{ex['description']}*: fPort {ex['input']['fPort']}, `{hexs}` →",
                        f"`{json.dumps(ex['output'].get('data', ex['output']), ensure_ascii=False)}`"]
            else:
                hexs = bytes(ex["output"]["bytes"]).hex(" ")
                out += ["", f"*{ex['description']}*: `{json.dumps(ex['input']['data'], ensure_ascii=False)}` → "
                            f"fPort {ex['output']['fPort']}, `{hexs}`"]
    out += ["", "## Errors", "", "Decoders answer `{\"errors\": [text]}` instead of data; the texts:", ""]
    out += [f"- `{k}`: {v}" for k, v in spec["errors"].items()]
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------------------- main


def artefacts(spec: dict) -> dict[Path, str]:
    c, msgs = compile_spec(spec)
    return {
        TABLES_PATH: render_python(spec, c, msgs),
        FAST_PATH: render_fast(spec, c, msgs),
        JS_PATH: render_js(spec, c, msgs),
        EXAMPLES_PATH: render_examples(spec),
        TTN_PATH: render_ttn(spec),
        DOCS_PATH: render_markdown(spec, c, msgs),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="fail if a committed artefact is stale")
    args = ap.parse_args(argv)
    try:
        out = artefacts(load_spec())
    except (SpecError, KeyError, ValueError) as e:
        print(f"spec error: {e}", file=sys.stderr)
        return 2
    stale = []
    for path, text in out.items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(path.relative_to(HERE.parent))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(HERE.parent)}")
    if stale:
        print("stale generated files (run `make codecs`): " + ", ".join(map(str, stale)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
