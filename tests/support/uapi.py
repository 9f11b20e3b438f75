"""Numbers from the installed kernel UAPI headers (linux-libc-dev), to check our constants against.

Tests skip with the reason when the headers are missing: the values they
check are written out in the modules themselves.
"""
import os
import re

import pytest

INCLUDE = "/usr/include/linux"


def header(name):
    path = os.path.join(INCLUDE, name)
    if not os.path.exists(path):
        pytest.skip("needs linux-libc-dev's %s" % path)
    with open(path) as f:
        return re.sub(r"/\*.*?\*/", "", f.read(), flags=re.S)


def enum(text, name):
    """{member: value} of `enum name { ... };`, counting from 0 and following explicit `= N`."""
    body = re.search(r"enum %s\s*\{(.*?)\};" % name, text, re.S).group(1)        # "" finds the first anonymous one
    body = re.sub(r"^\s*#.*$", "", body, flags=re.M)          # #defines interleaved with the members
    out, n = {}, 0
    for item in body.split(","):
        m = re.match(r"\s*(\w+)\s*(?:=\s*([^,]+?))?\s*$", item)
        if not m:
            continue
        if m.group(2) is not None:
            expr = re.sub(r"\b(0x[0-9a-fA-F]+|\d+)[uUlL]+\b", r"\1", m.group(2))      # C suffixes
            n = int(eval(expr, {}, dict(out)))          # literals, shifts and earlier members only
        out[m.group(1)] = n
        n += 1
    return out


def define(text, name):
    m = re.search(r"#define\s+%s\s+(.+)" % name, text)
    return int(eval(re.sub(r"\b(0x[0-9a-fA-F]+|\d+)[uUlL]+\b", r"\1", m.group(1).strip()), {}, {}))


def check_module(module, text, enums):
    """Every member of `enums` the module defines has the header's value; returns how many matched."""
    seen = 0
    for e in enums:
        for name, value in enum(text, e).items():
            if hasattr(module, name):
                assert getattr(module, name) == value, name
                seen += 1
    return seen
