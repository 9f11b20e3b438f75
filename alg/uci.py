"""Read OpenWrt uci files (/etc/config/NAME) ourselves, so the same file works off OpenWrt.

The format: `config TYPE ['NAME']` opens a section; `option KEY 'VALUE'` and
`list KEY 'VALUE'` fill it; single or double quotes (backslash escapes in
double quotes and bare words), `#` comments, blank lines.
"""

from __future__ import annotations

import shlex
from typing import Dict, List, Optional, Union

Value = Union[str, List[str]]


class UciError(ValueError):
    pass


class Section:
    def __init__(self, type_: str, name: Optional[str]):
        self.type = type_
        self.name = name
        self.options: Dict[str, Value] = {}

    def get(self, key: str, default=None):
        return self.options.get(key, default)

    def get_list(self, key: str) -> List[str]:
        v = self.options.get(key)
        if v is None:
            return []
        return v if isinstance(v, list) else [v]

    def get_bool(self, key: str, default: bool = False) -> bool:
        v = self.options.get(key)
        if v is None:
            return default
        if isinstance(v, list):
            v = v[-1]
        if v.lower() in ("1", "on", "true", "yes", "enabled"):
            return True
        if v.lower() in ("0", "off", "false", "no", "disabled"):
            return False
        raise UciError("option %s: %r is not a boolean (use 0 or 1)" % (key, v))


def parse(text: str, filename: str = "<config>") -> List[Section]:
    sections: List[Section] = []
    cur: Optional[Section] = None
    for lineno, line in enumerate(text.splitlines(), 1):
        try:
            words = shlex.split(line, comments=True, posix=True)
        except ValueError as e:
            raise UciError("%s:%d: %s" % (filename, lineno, e)) from None
        if not words:
            continue
        kw = words[0]
        if kw == "package":
            continue
        if kw == "config":
            if len(words) not in (2, 3):
                raise UciError("%s:%d: 'config TYPE [NAME]' expected" % (filename, lineno))
            cur = Section(words[1], words[2] if len(words) == 3 else None)
            sections.append(cur)
        elif kw in ("option", "list"):
            if cur is None:
                raise UciError("%s:%d: %s before any 'config' line" % (filename, lineno, kw))
            if len(words) != 3:
                raise UciError("%s:%d: '%s KEY VALUE' expected" % (filename, lineno, kw))
            key, value = words[1], words[2]
            if kw == "option":
                cur.options[key] = value
            else:
                old = cur.options.get(key)
                if old is None:
                    cur.options[key] = [value]
                elif isinstance(old, list):
                    old.append(value)
                else:
                    cur.options[key] = [old, value]
        else:
            raise UciError("%s:%d: unknown keyword %r" % (filename, lineno, kw))
    return sections


def load(path: str) -> List[Section]:
    with open(path, encoding="utf-8") as f:
        return parse(f.read(), path)


def section(sections: List[Section], type_: str, name: Optional[str] = None) -> Optional[Section]:
    """The section called name, else the first of its type."""
    for s in sections:
        if s.type == type_ and (name is None or s.name == name):
            return s
    if name is not None:
        return section(sections, type_)
    return None
