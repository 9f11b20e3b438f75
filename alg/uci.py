"""Read OpenWrt uci files (/etc/config/NAME) ourselves, so the same file works off OpenWrt.

The format: `config TYPE ['NAME']` opens a section; `option KEY 'VALUE'` and
`list KEY 'VALUE'` fill it (or `c`, `o`, `l`); quoting as uci's own parser
does it (_statements); section and option names are letters, digits and _.
"""

from __future__ import annotations

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


KEYWORDS = {"package": "package", "p": "package", "config": "config", "c": "config",
            "option": "option", "o": "option", "list": "list", "l": "list"}


def _statements(text: str, filename: str):
    """Yield (line number, words) per statement, with uci's quoting (openwrt/uci file.c).

    Outside quotes: whitespace splits words, `#` comments to the end of the
    line, `;` ends the statement, a backslash takes the next character as is.
    Single quotes are literal; in double quotes a backslash takes the next
    character and a backslash before a newline continues the line.  Quoted
    parts may span lines and join the word they touch ('a'"b"c is abc).
    """
    words: List[str] = []
    word: Optional[List[str]] = None
    lineno, start = 1, 1
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\n" or c == ";":
            if word is not None:
                words.append("".join(word))
                word = None
            if words:
                yield start, words
            words = []
            if c == "\n":
                lineno += 1
            i += 1
            start = lineno
        elif c in " \t\r\f\v":
            if word is not None:
                words.append("".join(word))
                word = None
            i += 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif c == "'" or c == '"':
            word = word if word is not None else []
            opened = lineno
            i += 1
            while True:
                if i >= n:
                    raise UciError("%s:%d: unterminated %s quote" % (filename, opened, "single" if c == "'" else "double"))
                ch = text[i]
                if ch == c:
                    i += 1
                    break
                if ch == "\\" and c == '"':
                    if i + 1 >= n:
                        raise UciError("%s:%d: unterminated double quote" % (filename, opened))
                    ch = text[i + 1]
                    i += 2
                    if ch == "\n":
                        lineno += 1          # continuation: the newline is dropped
                        continue
                    word.append(ch)
                    continue
                if ch == "\n":
                    lineno += 1
                word.append(ch)
                i += 1
        elif c == "\\":
            if i + 1 >= n or text[i + 1] == "\n":
                raise UciError("%s:%d: unterminated \\ at the end of a line" % (filename, lineno))
            word = (word if word is not None else []) + [text[i + 1]]
            i += 2
        else:
            word = word if word is not None else []
            word.append(c)
            i += 1
    if word is not None:
        words.append("".join(word))
    if words:
        yield start, words


def _name(kind: str, value: str, filename: str, lineno: int) -> str:
    if not value or not all(ch.isalnum() or ch == "_" for ch in value) or not value.isascii():
        raise UciError("%s:%d: invalid %s name %r (letters, digits and _ only)" % (filename, lineno, kind, value))
    return value


def parse(text: str, filename: str = "<config>") -> List[Section]:
    sections: List[Section] = []
    cur: Optional[Section] = None
    for lineno, words in _statements(text, filename):
        kw = KEYWORDS.get(words[0])
        if kw is None:
            raise UciError("%s:%d: unknown keyword %r" % (filename, lineno, words[0]))
        if kw == "package":
            continue
        if kw == "config":
            if len(words) not in (2, 3):
                raise UciError("%s:%d: 'config TYPE [NAME]' expected" % (filename, lineno))
            type_ = words[1]
            if not type_ or not all(33 <= ord(ch) <= 126 for ch in type_):
                raise UciError("%s:%d: invalid section type %r" % (filename, lineno, type_))
            cur = Section(type_, _name("section", words[2], filename, lineno) if len(words) == 3 else None)
            sections.append(cur)
            continue
        if cur is None:
            raise UciError("%s:%d: %s before any 'config' line" % (filename, lineno, kw))
        if len(words) != 3:
            raise UciError("%s:%d: '%s NAME VALUE' expected" % (filename, lineno, kw))
        key, value = _name("option", words[1], filename, lineno), words[2]
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
